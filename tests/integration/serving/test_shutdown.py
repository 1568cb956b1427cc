"""SIGTERM to a runtime: it takes no new request, finishes the one in flight within its grace period, exits 0."""

from __future__ import annotations

import os
import signal
import socket
import threading
import time

import pytest
from test_predictor_outage import rest_status

from pipelines.local_stack import LocalStack

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]


def _refused(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


def test_sigterm_finishes_the_request_in_flight_then_exits_0(bundles, tmp_path):
    with LocalStack({"heart-disease": str(bundles["heart-disease"])}, ports="ephemeral", predictor_protocol="v2",
                    log_dir=tmp_path, drift=False, ready_timeout_s=120,
                    extra_args={"heart-disease/transformer": ["--grace_period", "8", "--predictor_retries", "0",
                                                              "--predictor_timeout_s", "20"]}) as stack:
        endpoint = stack.endpoints["heart-disease"]
        assert rest_status(endpoint.infer_url)[0] == 200
        predictor = stack.processes["heart-disease/predictor"].popen
        transformer = stack.processes["heart-disease/transformer"].popen

        os.kill(predictor.pid, signal.SIGSTOP)  # the next request hangs in the transformer's predictor call
        answers: list[tuple[int, str]] = []
        in_flight = threading.Thread(target=lambda: answers.append(rest_status(endpoint.infer_url)))
        in_flight.start()
        try:
            time.sleep(1.0)
            transformer.send_signal(signal.SIGTERM)
            time.sleep(1.0)
            assert transformer.poll() is None  # still finishing the request in flight
            assert _refused(endpoint.ports.transformer_http)  # but taking no new connection
        finally:
            os.kill(predictor.pid, signal.SIGCONT)
        in_flight.join(30)
        assert answers and answers[0][0] == 200, answers
        assert transformer.wait(10) == 0
        assert _refused(endpoint.ports.transformer_http) and _refused(endpoint.ports.transformer_grpc)
