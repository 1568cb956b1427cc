"""What a runtime says about itself at start-up reaches its log: the bundle it loaded and every KServe
internal it patched (an operator reading a pod's log must see both)."""

import re

import pytest

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("process", ["heart-disease/predictor", "heart-disease/transformer", "pneumonia/predictor"])
def test_start_up_lines_reach_the_log(stack, process):
    # the whole log: the stack is shared by the session, and other tests' requests may have logged plenty since
    log = stack.log_tail(process, lines=None)
    patched = re.search(r"KServe 0\.21\.\d+ internals patched: (.+)", log)
    assert patched, f"no patch line in the {process} log:\n{log[-4000:]}"
    assert "rest_decode" in patched.group(1) and "infer_routes_first" in patched.group(1)
    assert re.search(r"(loaded|ready with schema of) \S+ v1", log), log[-4000:]
