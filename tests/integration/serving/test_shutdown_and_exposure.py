"""The local stack listens on loopback only, and a stop request during start-up leaves no child and no port."""

from __future__ import annotations

import ipaddress
import socket
import threading
import time

import psutil
import pytest

from pipelines.local_stack import LocalStack, StartInterrupted


def _listening(pid: int) -> set[tuple[str, int]]:
    """(address, port) of every listening TCP socket of ``pid`` and its descendants."""
    found = set()
    root = psutil.Process(pid)
    for proc in [root, *root.children(recursive=True)]:
        for conn in proc.connections(kind="tcp"):
            if conn.status == psutil.CONN_LISTEN:
                found.add((conn.laddr.ip, conn.laddr.port))
    return found


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("0.0.0.0", port))
        except OSError:
            return False
    return True


def test_nothing_of_the_local_stack_listens_on_all_interfaces(stack):
    listening = set()
    for process in stack.processes.values():
        listening |= _listening(process.popen.pid)
    # gRPC's socket is IPv6 with the IPv4 loopback mapped into it (::ffff:127.0.0.1)
    addresses = {ipaddress.ip_address(ip) for ip, _ in listening}
    assert {getattr(a, "ipv4_mapped", None) or a for a in addresses} == {ipaddress.ip_address("127.0.0.1")}, listening
    expected = set()
    for endpoint in stack.endpoints.values():
        ports = endpoint.ports
        expected |= {ports.transformer_http, ports.transformer_grpc, ports.predictor_http, ports.predictor_grpc,
                     ports.drift}
    assert expected <= {port for _, port in listening}


@pytest.mark.parametrize("after_s", [0.3, 2.0])
def test_a_stop_request_during_start_up_leaves_no_child_and_no_port(bundles, tmp_path, after_s):
    """At 0.3 s the runtimes are importing their libraries; at 2 s they load their models."""
    stack = LocalStack({"heart-disease": str(bundles["heart-disease"])}, ports="ephemeral", log_dir=tmp_path / "logs",
                       drift_dir=tmp_path / "drift", ready_timeout_s=120)
    requests = [0]
    stack.interrupts = lambda: requests[0]
    pids: list[int] = []
    spawn = stack._spawn

    def spawn_and_note(key, argv):
        spawn(key, argv)
        pids.append(stack.processes[key].popen.pid)

    stack._spawn = spawn_and_note
    threading.Timer(after_s, lambda: requests.__setitem__(0, 1)).start()
    started = time.monotonic()
    with pytest.raises(StartInterrupted):
        stack.start()
    took = time.monotonic() - started
    assert len(pids) == 3  # predictor, transformer, drift sidecar
    assert took < after_s + 12.0  # one grace period (10 s) at most
    assert not any(psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE for pid in pids)
    ports = stack.endpoints["heart-disease"].ports
    for port in (ports.transformer_http, ports.transformer_grpc, ports.predictor_http, ports.predictor_grpc,
                 ports.drift):
        assert _port_free(port), port
