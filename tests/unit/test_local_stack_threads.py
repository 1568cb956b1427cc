"""A local torch predictor gets half the machine's cores for its intra-op threads (it shares them with its
transformer, the drift sidecars and the other workload), unless the caller or the environment chooses."""

from __future__ import annotations

import os

import pytest

from pipelines.local_stack import LocalStack

pytestmark = pytest.mark.unit


def _predictor_argv(stack: LocalStack, workload: str) -> list[str]:
    return stack._predictor_argv(stack.endpoints[workload])


def _threads(argv: list[str]) -> list[str]:
    return [argv[i + 1] for i, a in enumerate(argv) if a == "--num_threads"]


def test_a_local_torch_predictor_takes_half_the_cores_and_the_caller_or_environment_can_choose(tmp_path, monkeypatch):
    monkeypatch.delenv("CLINOPS_TORCH_NUM_THREADS", raising=False)
    monkeypatch.setattr(os, "sched_getaffinity", lambda _pid: set(range(6)))
    bundles = {"heart-disease": str(tmp_path / "h"), "pneumonia": str(tmp_path / "p")}
    stack = LocalStack(bundles, ports="ephemeral", log_dir=tmp_path, drift=False)
    assert _threads(_predictor_argv(stack, "pneumonia")) == ["3"]
    assert _threads(_predictor_argv(stack, "heart-disease")) == []  # scikit-learn: not a torch pool

    monkeypatch.setattr(os, "sched_getaffinity", lambda _pid: {0})
    assert _threads(_predictor_argv(stack, "pneumonia")) == ["1"]

    chosen = LocalStack(bundles, ports="ephemeral", log_dir=tmp_path, drift=False,
                        extra_args={"pneumonia/predictor": ["--num_threads", "2"]})
    assert _threads(_predictor_argv(chosen, "pneumonia")) == ["2"]

    from_env = LocalStack(bundles, ports="ephemeral", log_dir=tmp_path, drift=False,
                          env={"CLINOPS_TORCH_NUM_THREADS": "4"})
    assert _threads(_predictor_argv(from_env, "pneumonia")) == []  # the predictor reads it itself
