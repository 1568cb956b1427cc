"""The registry locks: the Lease algorithm against a fake coordination API, the file lock between
processes, re-entrancy, and which mechanism the settings choose."""

from __future__ import annotations

import copy
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

from components.common import locks
from components.common.settings import Settings, reload_settings

pytestmark = pytest.mark.unit

T0 = datetime(2026, 11, 23, 12, 0, 0, tzinfo=UTC)


class FakeClock:
    """The lock's clock and sleep: sleeping moves time on and runs whatever was scheduled for then."""

    def __init__(self):
        self.now = T0
        self.sleeps: list[float] = []
        self.at: list[tuple[float, callable]] = []  # (seconds after T0, action)

    def __call__(self) -> datetime:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += timedelta(seconds=seconds)
        due = [(t, a) for t, a in self.at if T0 + timedelta(seconds=t) <= self.now]
        self.at = [(t, a) for t, a in self.at if (t, a) not in due]
        for _, action in due:
            action()


class FakeLeases:
    """Just the CoordinationV1Api calls locks.py makes, with the API server's compare-and-set:
    a replace whose resourceVersion is not the stored one is a 409, a create of an existing one too.
    ``before_write`` runs once before the next write: another pod getting in first."""

    def __init__(self):
        self.leases: dict[tuple[str, str], client.V1Lease] = {}
        self.version = 0
        self.calls: list[str] = []
        self.before_write = None

    def _store(self, namespace, body):
        self.version += 1
        lease = copy.deepcopy(body)
        lease.metadata.resource_version = str(self.version)
        for name in ("acquire_time", "renew_time"):  # the client hands back datetimes
            value = getattr(lease.spec, name)
            if isinstance(value, str):
                setattr(lease.spec, name, datetime.fromisoformat(value.replace("Z", "+00:00")))
        self.leases[(namespace, lease.metadata.name)] = lease
        return copy.deepcopy(lease)

    def _interleave(self):
        hook, self.before_write = self.before_write, None
        if hook:
            hook()

    def put(self, namespace, name, holder, renewed, duration=30, transitions=0):
        """Another pod's write."""
        spec = client.V1LeaseSpec(holder_identity=holder, lease_duration_seconds=duration, acquire_time=renewed,
                                  renew_time=renewed, lease_transitions=transitions)
        return self._store(namespace, client.V1Lease(metadata=client.V1ObjectMeta(name=name, namespace=namespace),
                                                     spec=spec))

    def read_namespaced_lease(self, name, namespace):
        self.calls.append("read")
        if (namespace, name) not in self.leases:
            raise ApiException(status=404, reason="Not Found")
        return copy.deepcopy(self.leases[(namespace, name)])

    def create_namespaced_lease(self, namespace, body):
        self.calls.append("create")
        self._interleave()
        if (namespace, body.metadata.name) in self.leases:
            raise ApiException(status=409, reason="AlreadyExists")
        assert body.metadata.resource_version is None
        return self._store(namespace, body)

    def replace_namespaced_lease(self, name, namespace, body):
        self.calls.append("replace")
        self._interleave()
        stored = self.leases.get((namespace, name))
        if stored is None:
            raise ApiException(status=404, reason="Not Found")
        if body.metadata.resource_version != stored.metadata.resource_version:
            raise ApiException(status=409, reason="Conflict")
        return self._store(namespace, body)

    def holder(self, namespace="ml", name="clinops-registry-m"):
        return self.leases[(namespace, name)].spec.holder_identity


def _lease(api, clock, holder="me", **kw):
    return locks.LeaseLock("clinops-registry-m", "ml", api=api, holder=holder, duration_s=30, poll_s=2,
                           renew_every_s=0, clock=clock, sleep=clock.sleep, **kw)


def test_lease_is_created_when_absent_and_cleared_on_release():
    api, clock = FakeLeases(), FakeClock()
    lock = _lease(api, clock)
    lock.acquire(timeout=10)
    stored = api.leases[("ml", "clinops-registry-m")]
    assert stored.spec.holder_identity == "me" and stored.spec.lease_duration_seconds == 30
    assert stored.spec.renew_time == T0 and stored.spec.lease_transitions == 0
    assert api.calls == ["read", "create"] and clock.sleeps == []
    lock.release()
    assert api.holder() is None and not lock.lost
    # a released lease is free: the next one takes it at once, counting a transition
    other = _lease(api, clock, holder="next")
    other.acquire(timeout=0)
    assert api.holder() == "next" and api.leases[("ml", "clinops-registry-m")].spec.lease_transitions == 1


def test_lease_waits_while_held_and_unexpired_then_takes_it_when_released():
    api, clock = FakeLeases(), FakeClock()
    api.put("ml", "clinops-registry-m", "pod-a", T0)
    clock.at.append((5, lambda: api.put("ml", "clinops-registry-m", None, T0 + timedelta(seconds=5))))
    lock = _lease(api, clock)
    lock.acquire(timeout=60)
    assert api.holder() == "me"
    assert clock.sleeps == [2, 2, 2]  # polled every poll_s until pod-a let go at t=5


def test_lease_held_and_kept_renewed_is_never_taken_over():
    api, clock = FakeLeases(), FakeClock()
    api.put("ml", "clinops-registry-m", "pod-a", T0)
    for t in range(10, 100, 10):  # pod-a renews every 10 s
        clock.at.append((t, lambda t=t: api.put("ml", "clinops-registry-m", "pod-a", T0 + timedelta(seconds=t))))
    with pytest.raises(locks.LockTimeout) as caught:
        _lease(api, clock).acquire(timeout=45)
    assert "pod-a" in str(caught.value) and "Lease ml/clinops-registry-m" in str(caught.value)
    assert "gave up after 45 s" in str(caught.value)
    assert api.holder() == "pod-a" and "create" not in api.calls
    assert sum(clock.sleeps) == pytest.approx(45)


def test_an_expired_lease_is_taken_over_with_compare_and_set():
    api, clock = FakeLeases(), FakeClock()
    api.put("ml", "clinops-registry-m", "dead-pod", T0 - timedelta(seconds=31), transitions=4)
    lock = _lease(api, clock)
    lock.acquire(timeout=0)
    stored = api.leases[("ml", "clinops-registry-m")]
    assert stored.spec.holder_identity == "me" and stored.spec.lease_transitions == 5
    assert stored.spec.acquire_time == T0 and api.calls == ["read", "replace"] and clock.sleeps == []


def test_a_lease_not_yet_expired_is_waited_for_until_it_expires():
    api, clock = FakeLeases(), FakeClock()
    api.put("ml", "clinops-registry-m", "dying-pod", T0 - timedelta(seconds=25))  # expires at t=5
    _lease(api, clock).acquire(timeout=60)
    assert api.holder() == "me" and clock.sleeps == [2, 2, 2]


def test_a_lost_create_race_is_a_new_look_then_a_wait():
    api, clock = FakeLeases(), FakeClock()
    # another pod creates the lease between our read (404) and our create
    api.before_write = lambda: api.put("ml", "clinops-registry-m", "pod-b", clock.now)
    clock.at.append((4, lambda: api.put("ml", "clinops-registry-m", None, clock.now)))
    _lease(api, clock).acquire(timeout=60)
    assert api.calls[:3] == ["read", "create", "read"]  # 409, looked again, found pod-b holding it
    assert api.holder() == "me" and clock.sleeps == [2, 2]


def test_a_lost_takeover_race_does_not_steal_from_the_winner():
    api, clock = FakeLeases(), FakeClock()
    api.put("ml", "clinops-registry-m", "dead-pod", T0 - timedelta(seconds=60))
    # pod-c takes the expired lease over between our read and our replace: our replace is a 409
    api.before_write = lambda: api.put("ml", "clinops-registry-m", "pod-c", clock.now, transitions=1)
    with pytest.raises(locks.LockTimeout, match="held by pod-c"):
        _lease(api, clock).acquire(timeout=10)
    assert api.calls[:3] == ["read", "replace", "read"] and api.holder() == "pod-c"


def test_renew_moves_renew_time_and_notices_a_takeover():
    api, clock = FakeLeases(), FakeClock()
    lock = _lease(api, clock)
    lock.acquire(timeout=0)
    clock.now += timedelta(seconds=10)
    assert lock.renew() and api.leases[("ml", "clinops-registry-m")].spec.renew_time == T0 + timedelta(seconds=10)
    api.put("ml", "clinops-registry-m", "thief", clock.now)  # we were too slow: someone took it over
    assert not lock.renew() and lock.lost
    lock.release()  # leaves the new holder alone
    assert api.holder() == "thief"


def test_the_renewer_thread_keeps_a_long_hold_alive():
    api = FakeLeases()
    lock = locks.LeaseLock("clinops-registry-m", "ml", api=api, holder="me", duration_s=30, renew_every_s=0.05)
    lock.acquire(timeout=1)
    time.sleep(0.3)
    lock.release()
    assert api.calls.count("replace") >= 3  # renewals, then the release
    assert api.holder() is None and not lock.lost


def test_registry_lock_uses_the_lease_when_configured(monkeypatch, tmp_path):
    api = FakeLeases()
    monkeypatch.setenv("CLINOPS_HOME", str(tmp_path))
    monkeypatch.setenv("CLINOPS_REGISTRY_LOCK", "lease")
    monkeypatch.setenv("CLINOPS_LEASE_NAMESPACE", "ml")
    monkeypatch.setattr(locks, "coordination_api", lambda: api)
    reload_settings()
    try:
        with locks.registry_lock("Heart Disease"):
            (key,) = api.leases
            assert key[0] == "ml" and key[1].startswith("clinops-registry-heart-disease-")
            assert api.leases[key].spec.holder_identity.startswith(locks.identity().rsplit("/", 1)[0])
            with locks.registry_lock("Heart Disease"):  # re-entrant: no second acquisition
                assert api.calls.count("create") == 1
        assert api.leases[key].spec.holder_identity is None
        assert not (tmp_path / "locks").exists()
    finally:
        monkeypatch.undo()
        reload_settings()


@pytest.mark.parametrize(("env", "kind"), [
    ({}, "file"),
    ({"KUBERNETES_SERVICE_HOST": "10.0.0.1"}, "file"),  # a pod with a local SQLite registry
    ({"KUBERNETES_SERVICE_HOST": "10.0.0.1", "MLFLOW_TRACKING_URI": "http://mlflow:5000"}, "lease"),
    ({"MLFLOW_TRACKING_URI": "http://mlflow:5000"}, "file"),  # a laptop talking to a server
    ({"CLINOPS_REGISTRY_LOCK": "lease"}, "lease"),
    ({"CLINOPS_REGISTRY_LOCK": "file", "KUBERNETES_SERVICE_HOST": "10.0.0.1",
      "MLFLOW_TRACKING_URI": "http://mlflow:5000"}, "file"),
])
def test_auto_picks_the_lease_only_in_a_pod_tracking_to_a_server(monkeypatch, tmp_path, env, kind):
    for name in ("KUBERNETES_SERVICE_HOST", "MLFLOW_TRACKING_URI", "CLINOPS_MLFLOW_TRACKING_URI",
                 "CLINOPS_REGISTRY_LOCK"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("CLINOPS_HOME", str(tmp_path))
    assert Settings().registry_lock_kind == kind


def test_file_lock_lives_beside_the_database_and_times_out_naming_the_other_process(clinops_home):
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import sys, time\n"
         "from components.common import locks\n"
         "with locks.registry_lock('m'):\n"
         "    print('held', flush=True)\n"
         "    sys.stdin.readline()\n"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        assert (clinops_home / "mlflow" / "locks" / "registry-m.lock").exists()
        started = time.monotonic()
        with pytest.raises(locks.LockTimeout) as caught:
            with locks.registry_lock("m", timeout=0.5):
                pass
        assert 0.4 < time.monotonic() - started < 5
        assert f"pid-{holder.pid}/" in str(caught.value) and "registry-m.lock" in str(caught.value)
        holder.stdin.write("\n")
        holder.stdin.flush()
        assert holder.wait(timeout=30) == 0
        with locks.registry_lock("m", timeout=5):  # free again; and the holder's note is gone
            assert f"pid-{holder.pid}/" not in (clinops_home / "mlflow" / "locks" / "registry-m.lock.holder").read_text()
    finally:
        holder.kill()
        holder.wait()


def test_file_lock_is_reentrant_in_a_thread_and_exclusive_between_threads(clinops_home):
    outcome = []

    def other_thread():
        try:
            with locks.registry_lock("m", timeout=0.2):
                outcome.append("got it")
        except locks.LockTimeout as err:
            outcome.append(str(err))

    with locks.registry_lock("m"):
        with locks.registry_lock("m", timeout=0):  # nested in the same thread: no waiting for itself
            outcome.append("nested")
        thread = threading.Thread(target=other_thread)
        thread.start()
        thread.join()
    thread = threading.Thread(target=other_thread)
    thread.start()
    thread.join()
    assert outcome[0] == "nested" and "another thread of this process" in outcome[1]
    assert outcome[2] == "got it"


def test_store_lock_is_a_file_beside_sqlite_and_nothing_for_a_server(clinops_home, tmp_path):
    database = tmp_path / "elsewhere" / "mlflow.db"
    database.parent.mkdir()
    with locks.store_lock(f"sqlite:///{database}"):
        assert (tmp_path / "elsewhere" / "mlflow.db.lock").exists()
    with locks.store_lock("http://mlflow:5000"):
        pass
    assert [p.name for p in (tmp_path / "elsewhere").iterdir()] == ["mlflow.db.lock"]  # no holder note left
