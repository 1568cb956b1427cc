"""The sidecar's settings: defaults, then ``CLINOPS_DRIFT_*``, then flags."""

from pathlib import Path

import pytest

from bundle import workloads
from inference.drift.settings import DriftSettings, parse

pytestmark = pytest.mark.unit


def test_defaults_take_the_catalogs_drift_port_and_a_log_under_clinops_home(monkeypatch, tmp_path):
    monkeypatch.setenv("CLINOPS_HOME", str(tmp_path))
    settings = parse([], environ={})
    assert settings.workload == "heart-disease"
    assert settings.port == workloads.get("heart-disease").ports.drift == 8083
    assert parse(["--workload", "pneumonia"], environ={}).port == workloads.get("pneumonia").ports.drift == 8093
    assert settings.log_path == tmp_path / "drift" / "heart-disease"
    assert (settings.window_size, settings.fsync, settings.max_windows_queued) == (None, False, 8)


def test_environment_overrides_defaults_and_flags_override_the_environment():
    environ = {"CLINOPS_DRIFT_WORKLOAD": "pneumonia", "CLINOPS_DRIFT_PORT": "9999", "CLINOPS_DRIFT_WINDOW_SIZE": "50",
               "CLINOPS_DRIFT_WINDOW_SECONDS": "2.5", "CLINOPS_DRIFT_FSYNC": "true",
               "CLINOPS_DRIFT_LOG_DIR": "/var/drift", "CLINOPS_DRIFT_MAX_LOG_BYTES": "1024"}
    settings = parse([], environ=environ)
    assert (settings.workload, settings.port, settings.window_size, settings.window_seconds, settings.fsync) == (
        "pneumonia", 9999, 50, 2.5, True)
    assert settings.log_path == Path("/var/drift") and settings.max_log_bytes == 1024
    flagged = parse(["--port", "7000", "--window_size", "20", "--no-fsync", "--alert_url", "http://hook/"],
                    environ=environ)
    assert (flagged.port, flagged.window_size, flagged.fsync, flagged.alert_url) == (7000, 20, False, "http://hook/")
    assert flagged.workload == "pneumonia" and flagged.window_seconds == 2.5


def test_a_false_boolean_in_the_environment_is_false():
    assert parse([], environ={"CLINOPS_DRIFT_FSYNC": "0"}).fsync is False


def test_an_unknown_workload_is_a_clear_error(capsys):
    with pytest.raises(SystemExit) as exited:
        parse(["--workload", "retina"], environ={})
    assert exited.value.code == 2
    assert "workload 'retina': one of heart-disease, pneumonia" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        parse([], environ={"CLINOPS_DRIFT_WORKLOAD": "retina"})
    with pytest.raises(ValueError, match="one of heart-disease, pneumonia"):
        DriftSettings(workload="retina")


def test_a_badly_typed_flag_is_refused():
    with pytest.raises(SystemExit):
        parse(["--window_size", "many"], environ={})


def test_a_negative_in_flight_bound_is_a_clear_error_and_zero_means_none(capsys):
    with pytest.raises(SystemExit) as exited:
        parse(["--max_in_flight_events", "-1"], environ={})
    assert exited.value.code == 2 and "max_in_flight_events: 0 (no bound) or a positive count" in capsys.readouterr().err
    assert parse(["--max_in_flight_events", "0"], environ={}).max_in_flight_events == 0
    assert parse([], environ={}).max_in_flight_events == 32
