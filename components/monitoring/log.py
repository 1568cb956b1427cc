"""Where the drift sidecar's observation log lies and which of its records fall in a period (format:
:mod:`bundle.observations`). Locally the sidecar writes under ``$CLINOPS_HOME/drift/<workload>``; in a
cluster the pipeline is given the volume path instead."""

from __future__ import annotations

from pathlib import Path

from bundle import observations
from components.common.settings import get_settings
from components.monitoring.period import Period


def default_log_dir(workload: str) -> Path:
    return get_settings().home / "drift" / workload


def resolve_log_dir(workload: str, log_dir: str = "") -> Path:
    return Path(log_dir) if log_dir else default_log_dir(workload)


def records_in(log_dir: Path, period: Period) -> list[observations.Record]:
    """The records accepted within ``period``, oldest first."""
    return list(observations.read(log_dir, since_t=period.since, until_t=period.until))


def absence(log_dir: Path) -> str | None:
    """Why there can be no observations at all (no log yet), or None."""
    if not observations.segments(log_dir):
        return f"the observation log {log_dir} has no segments (has a drift sidecar run for this workload?)"
    return None
