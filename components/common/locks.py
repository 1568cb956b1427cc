"""Locks that let concurrent training runs share one model registry.

Every kfp.local task is its own process, and in a cluster every task is its own pod, so these are
inter-process locks. Two things need them:

* ``store_lock(tracking_uri)``: creating MLflow's database schema. MLflow's ``SqlAlchemyStore``
  runs its alembic migrations when it finds tables missing, with no lock of its own; two processes
  starting on a fresh SQLite file run them at once and corrupt the schema. For a SQLite database
  the lock is a file next to it (``mlflow.db.lock``); a tracking server does this itself (no lock).
* ``registry_lock(model_name)``: the promotion gate (read the champion, decide, move the alias,
  tag) and the champion pointer write, so that each decision is taken against the champion as it
  is at that moment and nothing moves between the read and the write.

Which mechanism ``registry_lock`` uses is the setting ``CLINOPS_REGISTRY_LOCK``
(:attr:`Settings.registry_lock_kind`):

* ``file``: a ``filelock`` lock file under ``$CLINOPS_HOME`` (next to the SQLite database when
  tracking goes to one: ``<db folder>/locks/registry-<model>.lock``). The kernel releases it when
  the holder dies. ``<lock>.holder`` says who holds it, for the timeout message.
* ``lease``: a ``coordination.k8s.io/v1`` Lease ``clinops-registry-<model>`` in the pod's
  namespace (or ``CLINOPS_LEASE_NAMESPACE``), see :class:`LeaseLock`. The service account needs
  ``get``, ``create`` and ``update`` on ``leases`` in that namespace.

Both are re-entrant within one process (a second ``with registry_lock(m)`` in the same thread
nests instead of waiting for itself) and exclusive between threads. Waiting longer than
``CLINOPS_REGISTRY_LOCK_TIMEOUT`` seconds raises :class:`LockTimeout`, naming the holder.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from components.common.settings import Settings, get_settings

SERVICE_ACCOUNT_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
# tracking URIs whose server (not this process) creates the database schema
_SERVER_SCHEMES = ("http://", "https://", "databricks", "uc:", "databricks-uc")


class LockTimeout(TimeoutError):
    """The lock was not free within the timeout; ``holder`` says who had it."""

    def __init__(self, name: str, holder: str, waited_s: float):
        self.name, self.holder, self.waited_s = name, holder, waited_s
        super().__init__(f"gave up after {waited_s:.0f} s waiting for the lock {name}: held by {holder}")


def identity() -> str:
    """Who this process is, as written into a lock: the host (a pod's name), pid and a random tag."""
    return f"{socket.gethostname()}/pid-{os.getpid()}/{uuid.uuid4().hex[:8]}"


def _now_text() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _slug(name: str, limit: int = 40) -> str:
    """A file- and DNS-safe form of ``name`` (lower case, ``a-z0-9-``); a short hash keeps distinct
    names distinct when anything had to change."""
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:limit].strip("-") or "x"
    if slug != name:
        slug += "-" + hashlib.sha256(name.encode()).hexdigest()[:8]
    return slug


# ---------------------------------------------------------------------------------------------
# file locks


class FileLock:
    """An exclusive ``filelock`` lock on ``path``; ``path.holder`` names the holder while held."""

    def __init__(self, path: Path, poll_s: float = 0.1):
        self.path = Path(path)
        self.holder_path = self.path.with_name(self.path.name + ".holder")
        self.poll_s = poll_s
        self._lock = None
        self.name = str(self.path)

    def acquire(self, timeout: float) -> None:
        import filelock

        self.path.parent.mkdir(parents=True, exist_ok=True)
        lock = filelock.FileLock(str(self.path), thread_local=False)
        try:
            lock.acquire(timeout=max(0.0, timeout), poll_interval=self.poll_s)
        except filelock.Timeout:
            raise LockTimeout(self.name, self.holder(), timeout) from None
        self._lock = lock
        try:
            self.holder_path.write_text(json.dumps({"holder": identity(), "since": _now_text()}))
        except OSError:  # the note is for error messages only
            pass

    def holder(self) -> str:
        try:
            note = json.loads(self.holder_path.read_text())
            return f"{note['holder']} since {note['since']}"
        except (OSError, ValueError, KeyError, TypeError):
            return "an unknown process (no holder note)"

    def release(self) -> None:
        lock, self._lock = self._lock, None
        if lock is None:
            return
        with contextlib.suppress(OSError):  # cleared before the lock goes, so the next holder's note stays
            self.holder_path.unlink()
        lock.release()


# ---------------------------------------------------------------------------------------------
# Kubernetes Lease


def _lease_time(value) -> datetime | None:
    """A Lease MicroTime as the client returns it (datetime) or as written here (text)."""
    if value is None or isinstance(value, datetime):
        return value
    return datetime.fromisoformat(str(value).replace("Z", "+00:00"))


def _micro_time(moment: datetime) -> str:
    # MicroTime wants exactly six fractional digits; datetime.isoformat drops them at .000000
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class LeaseLock:
    """Mutual exclusion across pods with a ``coordination.k8s.io/v1`` Lease.

    * absent: create it holding it (a 409 means another pod created it first: look again);
    * held by someone else and not expired (``renewTime + leaseDurationSeconds`` in the future):
      wait, polling every ``poll_s``;
    * free (no ``holderIdentity``, as left by a release) or expired (its holder died or lost the
      API): take it over with a replace carrying the ``resourceVersion`` that was read, so the API
      server refuses it with 409 when anyone wrote in between (compare-and-set); a lost race is
      simply a new look;
    * while held, a daemon thread renews it every ``renew_every_s`` (default a third of the
      duration), also compare-and-set; a failed renewal marks ``lost`` and says so;
    * release clears ``holderIdentity`` (compare-and-set), so the next waiter takes it at once.

    Expiry compares the holder's ``renewTime`` with this pod's clock: the pods' clocks are assumed
    to agree within ``duration_s - renew_every_s`` (NTP-synchronised nodes do).
    ``api`` is a ``kubernetes.client.CoordinationV1Api`` (or anything with its three lease calls).
    """

    def __init__(self, name: str, namespace: str, api=None, holder: str | None = None,
                 duration_s: int = 30, poll_s: float = 1.0, renew_every_s: float | None = None,
                 clock: Callable[[], datetime] | None = None, sleep: Callable[[float], None] = time.sleep):
        self.name, self.namespace = name, namespace
        self.api = api
        self.holder = holder or identity()
        self.duration_s = int(duration_s)
        self.poll_s = poll_s
        self.renew_every_s = duration_s / 3 if renew_every_s is None else renew_every_s
        self.clock = clock or (lambda: datetime.now(UTC))
        self.sleep = sleep
        self.resource_version: str | None = None
        self.lost = False
        self._stop = threading.Event()
        self._renewer: threading.Thread | None = None

    # -- the API, with its errors reduced to what the algorithm needs
    def _api(self):
        if self.api is None:
            self.api = coordination_api()
        return self.api

    def _read(self):
        from kubernetes.client.rest import ApiException

        try:
            return self._api().read_namespaced_lease(self.name, self.namespace)
        except ApiException as err:
            if err.status == 404:
                return None
            raise

    def _body(self, spec, resource_version: str | None = None):
        from kubernetes import client

        meta = client.V1ObjectMeta(name=self.name, namespace=self.namespace, resource_version=resource_version,
                                   labels={"app.kubernetes.io/part-of": "clinops"})
        return client.V1Lease(api_version="coordination.k8s.io/v1", kind="Lease", metadata=meta, spec=spec)

    def _spec(self, holder: str | None, acquired: datetime | None, transitions: int):
        from kubernetes import client

        now = _micro_time(self.clock())
        return client.V1LeaseSpec(holder_identity=holder, lease_duration_seconds=self.duration_s,
                                  acquire_time=_micro_time(acquired) if acquired else None, renew_time=now,
                                  lease_transitions=transitions)

    def _write(self, body) -> bool:
        """Create the lease (``body`` without a resourceVersion) or replace it (compare-and-set on the
        resourceVersion in ``body``); False on 409: someone else wrote first."""
        from kubernetes.client.rest import ApiException

        try:
            if body.metadata.resource_version is None:
                written = self._api().create_namespaced_lease(self.namespace, body)
            else:
                written = self._api().replace_namespaced_lease(self.name, self.namespace, body)
        except ApiException as err:
            if err.status == 409:
                return False
            raise
        self.resource_version = getattr(getattr(written, "metadata", None), "resource_version", None)
        return True

    # -- the algorithm
    def expires_at(self, lease) -> datetime | None:
        spec = lease.spec
        renewed = _lease_time(spec.renew_time) or _lease_time(spec.acquire_time)
        if renewed is None:
            return None
        return renewed + timedelta(seconds=spec.lease_duration_seconds or self.duration_s)

    def describe(self, lease) -> str:
        if lease is None:
            return "nobody (no Lease)"
        spec = lease.spec
        expiry = self.expires_at(lease)
        return (f"{spec.holder_identity} (Lease {self.namespace}/{self.name}, acquired "
                f"{spec.acquire_time}, renewed {spec.renew_time}, expires "
                f"{expiry.isoformat() if expiry else 'unknown'} unless renewed)")

    def _try_once(self) -> tuple[bool, object]:
        """One look and at most one write: (acquired, the lease as read)."""
        lease = self._read()
        if lease is None:
            body = self._body(self._spec(self.holder, self.clock(), 0))
            return self._write(body), None
        spec = lease.spec
        expiry = self.expires_at(lease)
        free = not spec.holder_identity or spec.holder_identity == self.holder
        if free or expiry is None or expiry <= self.clock():
            transitions = (spec.lease_transitions or 0) + (0 if spec.holder_identity == self.holder else 1)
            body = self._body(self._spec(self.holder, self.clock(), transitions), lease.metadata.resource_version)
            return self._write(body), lease
        return False, lease

    def acquire(self, timeout: float) -> None:
        deadline = self.clock() + timedelta(seconds=timeout)
        while True:
            acquired, lease = self._try_once()
            if acquired:
                self.lost = False
                self._start_renewer()
                return
            held = lease is not None and lease.spec.holder_identity not in (None, "", self.holder)
            left = (deadline - self.clock()).total_seconds()
            if left <= 0:
                raise LockTimeout(f"Lease {self.namespace}/{self.name}", self.describe(lease), timeout)
            if held:  # wait; a lost create/replace race is retried at once
                self.sleep(min(self.poll_s, left))

    def renew(self) -> bool:
        """Move ``renewTime`` on, if the lease is still ours; False (and ``lost``) when it is not."""
        lease = self._read()
        if lease is None or lease.spec.holder_identity != self.holder:
            self.lost = True
            return False
        spec = lease.spec
        body = self._body(self._spec(self.holder, _lease_time(spec.acquire_time), spec.lease_transitions or 0),
                          lease.metadata.resource_version)
        if not self._write(body):
            return self.renew()  # someone wrote in between: look again (it may still be ours)
        return True

    def _start_renewer(self) -> None:
        if self.renew_every_s <= 0:
            return
        self._stop.clear()

        def loop():
            while not self._stop.wait(self.renew_every_s):
                try:
                    if not self.renew():
                        print(f"lock: Lease {self.namespace}/{self.name} was taken over while held by "
                              f"{self.holder}", flush=True)
                        return
                except Exception as err:  # keep trying until the lease would expire anyway
                    print(f"lock: renewing Lease {self.namespace}/{self.name} failed: {err}", flush=True)

        self._renewer = threading.Thread(target=loop, name=f"lease-{self.name}", daemon=True)
        self._renewer.start()

    def release(self) -> None:
        self._stop.set()
        if self._renewer is not None:
            self._renewer.join()
            self._renewer = None
        for _ in range(5):
            lease = self._read()
            if lease is None or lease.spec.holder_identity != self.holder:
                if lease is not None and lease.spec.holder_identity:
                    self.lost = True
                    print(f"lock: Lease {self.namespace}/{self.name} had already passed to "
                          f"{lease.spec.holder_identity} when {self.holder} released it", flush=True)
                return
            spec = lease.spec
            body = self._body(self._spec(None, _lease_time(spec.acquire_time), spec.lease_transitions or 0),
                              lease.metadata.resource_version)
            if self._write(body):
                return
        # still ours after repeated conflicts: it simply expires after duration_s


def coordination_api():
    """``CoordinationV1Api`` from the in-cluster service account, else the local kubeconfig."""
    from kubernetes import client, config

    try:
        config.load_incluster_config()
    except config.ConfigException:
        config.load_kube_config()
    return client.CoordinationV1Api()


def lease_namespace(settings: Settings) -> str:
    if settings.lease_namespace:
        return settings.lease_namespace
    try:
        return SERVICE_ACCOUNT_NAMESPACE.read_text().strip() or "default"
    except OSError:
        return "default"


def lease_name(purpose: str) -> str:
    return f"clinops-{_slug(purpose, limit=200)}"


# ---------------------------------------------------------------------------------------------
# re-entrancy within a process, and the public context managers


@dataclass
class _Guard:
    rlock: threading.RLock = field(default_factory=threading.RLock)
    depth: int = 0
    backend: object = None


_guards: dict[str, _Guard] = {}
_guards_lock = threading.Lock()


@contextlib.contextmanager
def hold(key: str, make_backend: Callable[[], object], timeout: float) -> Iterator[None]:
    """Hold the inter-process lock ``make_backend()`` (one per ``key``), re-entrantly in this process."""
    with _guards_lock:
        guard = _guards.setdefault(key, _Guard())
    started = time.monotonic()
    if not guard.rlock.acquire(timeout=max(0.0, timeout)):
        raise LockTimeout(key, "another thread of this process", timeout)
    try:
        if guard.depth == 0:
            backend = make_backend()
            backend.acquire(max(0.0, timeout - (time.monotonic() - started)))
            guard.backend = backend
        guard.depth += 1
        try:
            yield
        finally:
            guard.depth -= 1
            if guard.depth == 0:
                backend, guard.backend = guard.backend, None
                backend.release()
    finally:
        guard.rlock.release()


def _sqlite_path(uri: str) -> Path | None:
    if uri.startswith("sqlite:///") and ":memory:" not in uri:
        return Path(uri.removeprefix("sqlite:///").split("?", 1)[0])
    return None


def lock_dir(settings: Settings | None = None) -> Path:
    """Where file locks live: beside the SQLite database when tracking goes to one, else under home."""
    settings = settings or get_settings()
    database = _sqlite_path(settings.tracking_uri)
    return database.parent / "locks" if database is not None else settings.home / "locks"


def _named_lock(purpose: str, settings: Settings, timeout: float | None):
    """(key, backend factory, timeout) for ``purpose`` with the configured mechanism."""
    timeout = settings.registry_lock_timeout if timeout is None else timeout
    if settings.registry_lock_kind == "lease":
        name, namespace = lease_name(purpose), lease_namespace(settings)
        return f"lease:{namespace}/{name}", (lambda: LeaseLock(name, namespace)), timeout
    path = lock_dir(settings) / f"{_slug(purpose)}.lock"
    return f"file:{path}", (lambda: FileLock(path)), timeout


@contextlib.contextmanager
def registry_lock(model_name: str, timeout: float | None = None) -> Iterator[None]:
    """Exclusive use of ``model_name``'s aliases and champion pointer among all runs sharing the
    registry: a file lock under ``$CLINOPS_HOME`` locally, a Kubernetes Lease in a cluster
    (``CLINOPS_REGISTRY_LOCK``). Re-entrant in one process; :class:`LockTimeout` after ``timeout``
    seconds (default ``CLINOPS_REGISTRY_LOCK_TIMEOUT``)."""
    key, make, timeout = _named_lock(f"registry-{model_name}", get_settings(), timeout)
    with hold(key, make, timeout):
        yield


@contextlib.contextmanager
def store_lock(tracking_uri: str, timeout: float | None = None) -> Iterator[None]:
    """Exclusive creation/migration of the tracking database behind ``tracking_uri``: a file lock
    next to a SQLite file (``<db>.lock``), nothing for a tracking server (it migrates its own
    database), the configured mechanism for a database URI (postgresql://, mysql://, ...)."""
    settings = get_settings()
    database = _sqlite_path(tracking_uri)
    if database is not None:
        path = database.with_name(database.name + ".lock")
        timeout = settings.registry_lock_timeout if timeout is None else timeout
        with hold(f"file:{path}", lambda: FileLock(path), timeout):
            yield
    elif tracking_uri.startswith(_SERVER_SCHEMES) or "://" not in tracking_uri:
        yield
    else:
        key, make, timeout = _named_lock("mlflow-schema", settings, timeout)
        with hold(key, make, timeout):
            yield


__all__ = ["FileLock", "LeaseLock", "LockTimeout", "coordination_api", "hold", "lock_dir", "registry_lock",
           "store_lock"]

