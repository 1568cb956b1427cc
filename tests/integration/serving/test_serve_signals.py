"""``clinops serve`` as a user runs it, signalled INT, INT, TERM in quick succession at the awkward moments
(while it starts its children, while they load their models, while it stops them): it exits 0 within one
grace period, every process it started is gone and every port it listened on is free."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest
from test_shutdown_and_exposure import _port_free

from pipelines.local_stack import Ports

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

GRACE_S = 10.0  # one process's grace period in LocalStack.stop_process
ROOT = Path(__file__).resolve().parents[3]


class Serve:
    """``clinops serve`` in a child process; its output read on a thread, its descendants noted as they appear."""

    def __init__(self, bundle: Path, home: Path):
        self.ports = Ports.ephemeral()
        env = {**os.environ, "CLINOPS_HOME": str(home), "CLINOPS_SERVE_HEART_DISEASE_PORTS": str(self.ports),
               "PYTHONUNBUFFERED": "1"}
        self.popen = subprocess.Popen([sys.executable, "-m", "pipelines.cli", "serve", "--workload", "heart-disease",
                                       "--bundle", f"heart-disease={bundle}"], cwd=ROOT, env=env,
                                      stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.lines: list[str] = []
        self.seen: dict[int, psutil.Process] = {}
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.popen.stdout:
            self.lines.append(line.rstrip())

    def note_children(self) -> int:
        try:
            for child in psutil.Process(self.popen.pid).children(recursive=True):
                self.seen.setdefault(child.pid, child)
        except psutil.NoSuchProcess:
            pass
        return len(self.seen)

    def wait_for(self, condition, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            self.note_children()
            assert self.popen.poll() is None, "\n".join(self.lines)
            assert time.monotonic() < deadline, "\n".join(self.lines)
            time.sleep(0.02)
        self.note_children()

    def printed(self, prefix: str) -> bool:
        return any(line.startswith(prefix) for line in self.lines)

    def int_int_term(self, gap_s: float = 0.15) -> None:
        for sig in (signal.SIGINT, signal.SIGINT, signal.SIGTERM):
            self.note_children()
            self.popen.send_signal(sig)
            time.sleep(gap_s)

    def alive(self) -> list[psutil.Process]:
        def running(p: psutil.Process) -> bool:
            try:
                return p.is_running() and p.status() != psutil.STATUS_ZOMBIE
            except psutil.NoSuchProcess:
                return False

        return [p for p in self.seen.values() if running(p)]


@pytest.fixture
def serve(bundles, tmp_path):
    started = Serve(bundles["heart-disease"], tmp_path / "home")
    yield started
    for p in [started.popen, *started.alive()]:  # whatever a failed test left
        try:
            p.kill()
        except (psutil.NoSuchProcess, ProcessLookupError):
            pass


@pytest.mark.parametrize("moment", ["starting its children", "loading the models", "stopping"])
def test_int_int_term_stops_serve_with_no_child_and_no_port_left(serve, moment):
    if moment == "starting its children":
        serve.wait_for(lambda: serve.printed("starting"))
    elif moment == "loading the models":
        # all three runtimes spawned (predictor, transformer, drift sidecar), none serving yet
        serve.wait_for(lambda: serve.note_children() >= 3)
        assert not serve.printed("serving")
    else:
        serve.wait_for(lambda: serve.printed("serving"))
        assert serve.note_children() >= 3
        serve.popen.send_signal(signal.SIGINT)
        serve.wait_for(lambda: serve.printed("stopping"))
    signalled = time.monotonic()
    serve.int_int_term()
    code = serve.popen.wait(GRACE_S + 5)
    took = time.monotonic() - signalled
    output = "\n".join(serve.lines)
    assert code == 0, output
    assert took < GRACE_S, output  # the second request hastened the stop: no grace period waited out
    assert serve.printed("stopped"), output
    if moment != "starting its children":
        assert len(serve.seen) >= 3, output
    deadline = time.monotonic() + 2.0  # a killed grandchild is reaped by init, not at once
    while serve.alive() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert serve.alive() == [], output
    p = serve.ports
    for port in (p.transformer_http, p.transformer_grpc, p.predictor_http, p.predictor_grpc, p.drift):
        assert _port_free(port), (port, output)
