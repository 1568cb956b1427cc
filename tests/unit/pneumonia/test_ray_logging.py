"""The local Ray started without its dashboard runs the hook that keeps Ray Train's placement-group cleaner from
logging a failed state-API query every second of training."""

import logging

import pytest

from components.pneumonia import ray_logging, trainer

pytestmark = pytest.mark.unit


def test_the_hook_keeps_the_cleaner_to_errors_and_leaves_other_loggers_alone():
    cleaner = logging.getLogger(ray_logging.CLEANER_LOGGER)
    before = cleaner.level, logging.getLogger("ray.train").level
    try:
        ray_logging.without_dashboard()
        assert cleaner.getEffectiveLevel() == logging.ERROR
        assert not cleaner.isEnabledFor(logging.WARNING) and cleaner.isEnabledFor(logging.ERROR)
        assert logging.getLogger("ray.train").level == before[1]
    finally:
        cleaner.setLevel(before[0])


def test_a_local_ray_without_dashboard_gets_the_hook_and_a_joined_cluster_does_not(monkeypatch):
    import ray

    calls = []
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", lambda **kwargs: calls.append(kwargs))
    monkeypatch.setattr(ray, "shutdown", lambda: None)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    with trainer.local_ray(num_cpus=2):
        pass
    monkeypatch.setenv("RAY_ADDRESS", "ray://head:10001")
    with trainer.local_ray():
        pass
    local, joined = calls
    assert local["include_dashboard"] is False
    assert local["runtime_env"] == {"worker_process_setup_hook": "components.pneumonia.ray_logging.without_dashboard"}
    assert "runtime_env" not in joined and joined["address"] == "ray://head:10001"
