"""Settings of the drift sidecar (env prefix ``CLINOPS_DRIFT_``; flags override). Plain dataclass: the
sidecar's environment has pydantic 1 (alibi-detect 0.11.4 needs it) and shares nothing with kserve's."""

from __future__ import annotations

import argparse
import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path

from bundle import workloads

ENV_PREFIX = "CLINOPS_DRIFT_"


def _f(default, help_text: str):
    return field(default=default, metadata={"help": help_text})


@dataclass
class DriftSettings:
    workload: str = _f("heart-disease", "Workload (a catalog name): which bundle's detector to build.")
    bundle: str | None = _f(None, "Bundle folder or s3:// URI; default: the workload's champion in bundle_store.")
    bundle_store: str | None = _f(None, "Store holding <workload>/champion.json (folder or s3://).")
    host: str = _f("127.0.0.1", "Address to listen on (0.0.0.0 in a pod).")
    port: int = _f(0, "Port; 0: the catalog's drift port of the workload.")
    log_dir: str | None = _f(None, "Folder of the observation log and verdicts; default: "
                                   "$CLINOPS_HOME/drift/<workload>.")
    window_size: int | None = _f(None, "Rows per window; default: the bundle's drift settings.")
    window_seconds: float | None = _f(None, "Close a window after this many seconds (if it has min_rows).")
    window_slide: int | None = _f(None, "Sliding windows: rows between verdicts (0: tumbling).")
    min_rows: int = _f(10, "Fewest rows a time-closed window is tested with.")
    pair_timeout_s: float = _f(30.0, "How long a request waits for its response (and back) before it is "
                                     "used alone.")
    max_pending: int = _f(10_000, "Most requests/responses waiting for their partner; past it: 429.")
    max_in_flight_events: int = _f(32, "Most events inside the sidecar at once; past it one is answered 429 from "
                                       "its request line, its body unread (0: no bound).")
    max_windows_queued: int = _f(8, "Most closed windows waiting for the detector; past it: 429.")
    max_log_bytes: int = _f(256 * 1024 * 1024, "Observation log size limit; tested observations are removed "
                                               "first, and past it with untested ones: 503.")
    max_log_age_s: float = _f(7 * 24 * 3600.0, "Tested observations older than this are removed.")
    max_body_bytes: int = _f(8 * 1024 * 1024, "Largest event body accepted (else 413).")
    fsync: bool = _f(False, "Acknowledge an event only once fsynced (it survives a power cut, not only a kill -9); "
                            "events that arrive together share one fsync.")
    alert_url: str | None = _f(None, "POST a CloudEvent (org.clinops.drift.detected) here on drift.")
    input_name: str | None = _f(None, "The request tensor the tabular detector reads; default: the schema's.")

    def __post_init__(self):
        if self.workload not in workloads.NAMES:
            raise ValueError(f"workload {self.workload!r}: one of {', '.join(workloads.NAMES)}")
        if self.max_in_flight_events < 0:
            raise ValueError("max_in_flight_events: 0 (no bound) or a positive count")
        if not self.port:
            self.port = workloads.get(self.workload).ports.drift

    @property
    def log_path(self) -> Path:
        if self.log_dir:
            return Path(self.log_dir)
        home = Path(os.environ.get("CLINOPS_HOME", ".clinops"))
        return home / "drift" / self.workload


def _kind(f: dataclasses.Field):
    text = str(f.type)
    return bool if "bool" in text else int if text.startswith("int") else float if "float" in text else str


def parse(argv: list[str] | None = None, environ: dict[str, str] | None = None) -> DriftSettings:
    """Defaults ← ``CLINOPS_DRIFT_*`` environment ← flags."""
    environ = os.environ if environ is None else environ
    parser = argparse.ArgumentParser(prog="python -m inference.drift", description=__doc__)
    values = {}
    for f in dataclasses.fields(DriftSettings):
        kind = _kind(f)
        if kind is bool:
            parser.add_argument(f"--{f.name}", action=argparse.BooleanOptionalAction, default=None,
                                help=f.metadata["help"])
        else:
            parser.add_argument(f"--{f.name}", type=kind, default=None, help=f.metadata["help"])
        env = environ.get(ENV_PREFIX + f.name.upper())
        if env is not None:
            values[f.name] = env.lower() in {"1", "true", "yes"} if kind is bool else kind(env)
    args = parser.parse_args(argv)
    values.update({k: v for k, v in vars(args).items() if v is not None})
    try:
        return DriftSettings(**values)
    except ValueError as err:
        parser.error(str(err))
