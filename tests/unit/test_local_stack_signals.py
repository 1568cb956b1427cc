"""``clinops serve`` stops however it is signalled: the handlers never block, start-up gives up at the first
stop request, and one more request while stopping kills what is left instead of waiting out the grace period."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import pytest

from pipelines.local_stack import LocalStack, StartInterrupted

# a child that ignores SIGTERM and has a grandchild in its process group, which also ignores it
STUBBORN = textwrap.dedent("""
    import signal, subprocess, sys, time
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    child = subprocess.Popen([sys.executable, "-c",
        "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(600)"])
    print(child.pid, flush=True)
    time.sleep(600)
""")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie (exited, not yet reaped by its parent) counts as gone
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:  # reaped meanwhile
        return False


def _gone(*pids: int, within: float = 2.0) -> bool:
    """All of ``pids`` gone within ``within`` s: a killed grandchild is reaped by init, not at once."""
    deadline = time.monotonic() + within
    while any(_alive(pid) for pid in pids):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


@pytest.fixture
def stack(tmp_path):
    stack = LocalStack({"heart-disease": str(tmp_path / "bundle")}, ports="ephemeral", drift=False,
                       log_dir=tmp_path / "logs")
    yield stack
    stack.interrupts = lambda: 99
    stack.stop()


def _spawn_stubborn(stack: LocalStack, key: str) -> tuple[int, int]:
    stack._spawn(key, [sys.executable, "-c", STUBBORN])
    log = stack.processes[key].log_path
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not log.read_text().strip():
        time.sleep(0.02)
    return stack.processes[key].popen.pid, int(log.read_text().split()[0])


def test_a_second_stop_request_kills_what_is_left_at_once(stack):
    pid, grandchild = _spawn_stubborn(stack, "heart-disease/predictor")
    requests = [1]
    stack.interrupts = lambda: requests[0]
    started = time.monotonic()
    # the second request comes 0.3 s into a stop whose grace period is 10 s
    threading.Timer(0.3, lambda: requests.__setitem__(0, 2)).start()
    stack.stop()
    took = time.monotonic() - started
    assert 0.25 < took < 3.0
    assert _gone(pid, grandchild)
    assert stack.processes == {}


def test_without_a_second_request_stop_waits_its_grace_period_then_kills_the_group(stack):
    pid, grandchild = _spawn_stubborn(stack, "heart-disease/predictor")
    started = time.monotonic()
    stack.stop_process("heart-disease/predictor", timeout=1.0)
    took = time.monotonic() - started
    assert 0.9 < took < 4.0
    assert _gone(pid, grandchild)


def test_start_up_gives_up_at_the_first_stop_request(stack):
    stack._spawn("heart-disease/predictor", [sys.executable, "-c", "import time; time.sleep(600)"])
    pid = stack.processes["heart-disease/predictor"].popen.pid
    stack.interrupts = lambda: 1
    started = time.monotonic()
    with pytest.raises(StartInterrupted):
        stack._wait_ready("heart-disease/predictor", "http://127.0.0.1:9", "heart-disease", time.monotonic() + 60)
    assert time.monotonic() - started < 1.0
    stack.stop()
    assert _gone(pid)


# the handlers of clinops serve, in a process whose main thread does what serve's does (polls, sleeps)
SERVE_LOOP = textwrap.dedent("""
    import sys, time
    from pipelines.local_stack import ServeSignals
    signals = ServeSignals().install()
    print("ready", flush=True)
    deadline = time.monotonic() + 20
    while signals.count() < 3 and time.monotonic() < deadline:
        time.sleep(0.001)
    print(signals.count(), signals.reload, flush=True)
    sys.exit(0 if signals.count() == 3 and signals.reload else 1)
""")


def test_signals_in_quick_succession_are_all_counted_and_never_hang_the_handler():
    proc = subprocess.Popen([sys.executable, "-c", SERVE_LOOP], stdout=subprocess.PIPE, text=True,
                            cwd=os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
    try:
        assert proc.stdout.readline().strip() == "ready"
        for sig in (signal.SIGHUP, signal.SIGINT, signal.SIGINT, signal.SIGTERM):
            os.kill(proc.pid, sig)
            time.sleep(0.01)
        out, _ = proc.communicate(timeout=10)
    finally:
        proc.kill()
    assert out.split() == ["3", "True"]
    assert proc.returncode == 0
