"""The deploy step without a cluster: the running ``clinops serve`` restarts on the new champion.

``clinops serve`` (pipelines/local_stack.py) keeps its state in ``$CLINOPS_HOME/serve/serve.json`` (this
module's :class:`ServeState`, the one contract between the two sides: components never import pipelines)
and restarts its processes on the champion bundles when it receives SIGHUP, counting restarts in
``generation``. :func:`restart` sends the signal and waits for the next generation to serve the bundle."""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

STATE_FILE = Path("serve") / "serve.json"
SERVING, RESTARTING, FAILED = "serving", "restarting", "failed"
RESTARTED, SKIPPED = "restarted", "skipped"


@dataclass
class ServeState:
    pid: int
    status: str
    generation: int = 0
    bundles: dict[str, str] = field(default_factory=dict)
    error: str = ""
    updated_at: float = field(default_factory=time.time)

    @staticmethod
    def path(home: Path) -> Path:
        return Path(home) / STATE_FILE

    def write(self, home: Path) -> Path:
        """Atomically: a reader sees the old state or the new one, never half of it."""
        path = self.path(home)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}")
        tmp.write_text(json.dumps(asdict(self) | {"updated_at": time.time()}, indent=2, sort_keys=True))
        tmp.replace(path)
        return path

    @classmethod
    def read(cls, home: Path) -> ServeState | None:
        try:
            data = json.loads(cls.path(home).read_text())
            return cls(int(data["pid"]), str(data["status"]), int(data.get("generation", 0)),
                       dict(data.get("bundles", {})), str(data.get("error", "")), float(data.get("updated_at", 0)))
        except FileNotFoundError:
            return None
        except (ValueError, KeyError, TypeError) as err:
            raise ValueError(f"{cls.path(home)}: not a serve state ({err})") from None

    @staticmethod
    def remove(home: Path, pid: int) -> None:
        """Remove the state file if it is still this process's."""
        state = ServeState.read(home)
        if state is not None and state.pid == pid:
            ServeState.path(home).unlink(missing_ok=True)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@dataclass
class LocalRestart:
    action: str  # restarted | skipped | failed
    reasons: list[str]
    bundle_uri: str

    def record(self) -> dict:
        return asdict(self)


def restart(home: Path, workload: str, bundle_uri: str, timeout_s: float = 180.0, poll_s: float = 0.5,
            sleep: Callable[[float], None] = time.sleep) -> LocalRestart:
    """Restart the running ``clinops serve`` and wait until it serves ``bundle_uri`` for ``workload``."""
    state = ServeState.read(home)
    if state is None or not alive(state.pid):
        where = ServeState.path(home)
        return LocalRestart(SKIPPED, [f"no clinops serve is running ({where} " +
                                      ("absent)" if state is None else f"names pid {state.pid}, which has exited)")],
                            bundle_uri)
    before = state.generation
    os.kill(state.pid, signal.SIGHUP)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        sleep(poll_s)
        state = ServeState.read(home)
        if state is None or not alive(state.pid):
            return LocalRestart(FAILED, ["clinops serve stopped while restarting"], bundle_uri)
        if state.generation > before and state.status in (SERVING, FAILED):
            break
    else:
        return LocalRestart(FAILED, [f"clinops serve did not come back within {timeout_s:g} s"], bundle_uri)
    if state.status == FAILED:
        return LocalRestart(FAILED, [f"clinops serve could not restart: {state.error}"], bundle_uri)
    served = state.bundles.get(workload)
    if served != bundle_uri:
        return LocalRestart(FAILED, [f"clinops serve restarted (pid {state.pid}) but serves {served or 'nothing'} "
                                     f"for {workload}, not {bundle_uri}"], bundle_uri)
    return LocalRestart(RESTARTED, [f"clinops serve (pid {state.pid}) restarted on {bundle_uri}"], bundle_uri)
