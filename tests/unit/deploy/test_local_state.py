"""The serve state file that the deploy step and `clinops serve` share, and the step's answers when no serve
can be signalled (the restart itself: tests/integration/deploy/test_local_restart.py)."""

import subprocess
import sys

import pytest

from components.deploy import local

pytestmark = pytest.mark.unit


def test_the_state_round_trips_and_a_foreign_file_is_named(tmp_path):
    local.ServeState(123, local.SERVING, 2, {"pneumonia": "/b/p/3"}).write(tmp_path)
    state = local.ServeState.read(tmp_path)
    assert (state.pid, state.status, state.generation, state.bundles) == (123, "serving", 2, {"pneumonia": "/b/p/3"})
    assert state.updated_at > 0
    local.ServeState.remove(tmp_path, 999)  # another process's state stays
    assert local.ServeState.read(tmp_path) is not None
    local.ServeState.remove(tmp_path, 123)
    assert local.ServeState.read(tmp_path) is None
    local.ServeState.path(tmp_path).write_text('{"status": "serving"}')
    with pytest.raises(ValueError, match="serve.json: not a serve state"):
        local.ServeState.read(tmp_path)


def test_no_serve_running_is_skipped_not_failed(tmp_path):
    result = local.restart(tmp_path, "heart-disease", "/b/h/2")
    assert result.action == local.SKIPPED and "serve.json absent" in result.reasons[0]
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    local.ServeState(int(gone.stdout), local.SERVING).write(tmp_path)
    result = local.restart(tmp_path, "heart-disease", "/b/h/2")
    assert result.action == local.SKIPPED and "which has exited" in result.reasons[0]
