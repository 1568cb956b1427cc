"""The serving stack on localhost: for each workload with a bundle, its predictor, its transformer and its
drift sidecar as separate processes (``python -m inference.<runtime>``), exactly the processes a cluster
runs; only the addresses differ. The sidecar runs under the drift environment's interpreter
(``CLINOPS_DRIFT_PYTHON``, default ``.venv-drift/bin/python``); the transformer sends it every predictor
call as the KServe request logger would.

Workloads, their predictor runtimes and default ports come from the workload catalog
(:mod:`bundle.workloads`).

``make serve`` → :func:`main`. Tests and the demo use :class:`LocalStack` as a context manager::

    with LocalStack({"heart-disease": bundle_dir}, ports="ephemeral") as stack:
        url = stack.endpoints["heart-disease"].rest_url
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import Field, create_model
from pydantic_settings import BaseSettings, SettingsConfigDict

from bundle import champion, workloads
from bundle.storage import S3Config
from components.common.settings import get_settings
from components.deploy.local import FAILED, RESTARTING, SERVING, ServeState

TRANSFORMER_RUNTIME = "inference.transformer"  # one transformer runtime for every workload (codec by kind)
DRIFT_RUNTIME = "inference.drift"
TORCH_RUNTIME = "inference.torch_predictor"  # given its share of a machine it does not have to itself
REPO_ROOT = Path(__file__).resolve().parents[1]


def drift_python() -> str:
    """The drift environment's interpreter (alibi-detect cannot share the main environment)."""
    return os.environ.get("CLINOPS_DRIFT_PYTHON") or str(REPO_ROOT / ".venv-drift" / "bin" / "python")


@dataclass
class Ports:
    transformer_http: int
    transformer_grpc: int
    predictor_http: int
    predictor_grpc: int
    drift: int = 0  # the drift sidecar; 0: none

    @classmethod
    def parse(cls, text: str) -> Ports:
        values = [int(v) for v in text.split(",")]
        if len(values) not in (4, 5):
            raise ValueError(f"ports {text!r}: four or five comma-separated numbers needed")
        return cls(*values)

    @classmethod
    def ephemeral(cls) -> Ports:
        return cls(*free_ports(5))

    @classmethod
    def of(cls, workload: workloads.Workload) -> Ports:
        """The catalog's local default ports of ``workload``."""
        p = workload.ports
        return cls(p.transformer_http, p.transformer_grpc, p.predictor_http, p.predictor_grpc, p.drift)

    def __str__(self) -> str:
        return (f"{self.transformer_http},{self.transformer_grpc},{self.predictor_http},{self.predictor_grpc},"
                f"{self.drift}")


def ports_setting(workload: str) -> str:
    """The settings field of a workload's ports: ``heart-disease`` → ``heart_disease_ports``, set by
    ``CLINOPS_SERVE_HEART_DISEASE_PORTS``."""
    return f"{workload.replace('-', '_')}_ports"


class _LocalStackSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CLINOPS_SERVE_", extra="ignore")

    predictor_protocol: str = Field(
        "grpc-v2", description="Transformer → predictor protocol: grpc-v2 (binary tensors, a persistent HTTP/2 "
                               "channel: less work per call on both sides) or v2 (REST).")
    ready_timeout_s: float = Field(180.0, description="How long to wait for every process to be ready.")
    host: str = Field("127.0.0.1", description="Address the printed endpoints and the transformer use.")

    def ports(self, workload: str) -> Ports:
        return Ports.parse(getattr(self, ports_setting(workload)))


# one ``<workload>_ports`` field per workload of the catalog, its default the catalog's ports
LocalStackSettings = create_model(
    "LocalStackSettings", __base__=_LocalStackSettings,
    __doc__="``make serve`` settings (env prefix ``CLINOPS_SERVE_``; flags override).",
    **{ports_setting(name): (str, Field(str(Ports.of(w)), description=f"{name}: transformer REST,gRPC, "
                                                                     f"predictor REST,gRPC, drift sidecar"))
       for name, w in workloads.WORKLOADS.items()})


@dataclass
class Endpoint:
    workload: str
    host: str
    ports: Ports
    bundle: str

    @property
    def rest_url(self) -> str:
        return f"http://{self.host}:{self.ports.transformer_http}"

    @property
    def grpc_target(self) -> str:
        return f"{self.host}:{self.ports.transformer_grpc}"

    @property
    def predictor_rest_url(self) -> str:
        return f"http://{self.host}:{self.ports.predictor_http}"

    @property
    def predictor_grpc_target(self) -> str:
        return f"{self.host}:{self.ports.predictor_grpc}"

    @property
    def infer_url(self) -> str:
        return f"{self.rest_url}/v2/models/{self.workload}/infer"

    @property
    def drift_url(self) -> str:
        return f"http://{self.host}:{self.ports.drift}"


class StartInterrupted(RuntimeError):
    """A stop request came while the stack was starting; start() has stopped what it had started."""


def _signal_group(popen: subprocess.Popen, sig: int) -> None:
    """Signal the child's process group (each child leads its own session); gone already is fine."""
    try:
        os.killpg(popen.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


@dataclass
class _Process:
    name: str
    argv: list[str]
    log_path: Path
    popen: subprocess.Popen | None = None
    log_file: object = field(default=None, repr=False)


def free_ports(count: int) -> list[int]:
    """Ports the OS hands out now (held together so that they differ)."""
    sockets = []
    try:
        for _ in range(count):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def http_ok(url: str, timeout: float = 1.0) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError, ValueError):
        return False


class LocalStack:
    """Predictor + transformer per workload, as child processes; a context manager."""

    def __init__(self, bundles: dict[str, str], ports: dict[str, Ports] | str = "default",
                 predictor_protocol: str | None = None, host: str = "127.0.0.1", log_dir: Path | None = None,
                 extra_args: dict[str, list[str]] | None = None, ready_timeout_s: float = 180.0,
                 env: dict[str, str] | None = None, drift: bool = True, drift_dir: Path | None = None):
        unknown = set(bundles) - set(workloads.NAMES)
        if unknown:
            raise ValueError(f"unknown workloads {sorted(unknown)}; known: {', '.join(workloads.NAMES)}")
        settings = LocalStackSettings()
        self.endpoints: dict[str, Endpoint] = {}
        for workload, bundle in bundles.items():
            if ports == "ephemeral":
                chosen = Ports.ephemeral()
            elif isinstance(ports, dict) and workload in ports:
                chosen = ports[workload]
            else:
                chosen = settings.ports(workload)
            self.endpoints[workload] = Endpoint(workload, host, chosen, str(bundle))
        self.predictor_protocol = predictor_protocol or settings.predictor_protocol
        if self.predictor_protocol not in ("v2", "grpc-v2"):
            raise ValueError(f"predictor protocol {self.predictor_protocol!r}: v2 or grpc-v2")
        self.log_dir = Path(log_dir or tempfile.mkdtemp(prefix="clinops-serve-"))
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.extra_args = extra_args or {}
        self.ready_timeout_s = ready_timeout_s
        self.env = {**os.environ, **(env or {})}
        self.processes: dict[str, _Process] = {}
        self.drift = drift  # a drift sidecar per workload, fed by its transformer
        if drift:
            for endpoint in self.endpoints.values():
                if not endpoint.ports.drift:
                    endpoint.ports.drift = free_ports(1)[0]
        self.drift_dir = Path(drift_dir) if drift_dir else get_settings().home / "drift"
        # how many stop requests (SIGINT/SIGTERM) the owner has received so far: start() gives up at the
        # first, and a stop hastens (SIGKILL to what is left) when one more comes while it runs
        self.interrupts: Callable[[], int] = lambda: 0

    # -- process control ----------------------------------------------------------------------------
    def _predictor_argv(self, endpoint: Endpoint) -> list[str]:
        runtime = workloads.get(endpoint.workload).predictor_runtime
        extra = self.extra_args.get(f"{endpoint.workload}/predictor", [])
        return [sys.executable, "-m", runtime, "--bundle", endpoint.bundle,
                "--model_name", endpoint.workload, "--http_port", str(endpoint.ports.predictor_http),
                "--grpc_port", str(endpoint.ports.predictor_grpc), "--bind_host", endpoint.host,
                *self._shared_cores(runtime, extra), *extra]

    def _shared_cores(self, runtime: str, extra: list[str]) -> list[str]:
        """A torch predictor here shares the machine's cores with its transformer, the drift sidecars and the
        other workload, where in a pod it has its own: half of them, unless the caller or
        ``CLINOPS_TORCH_NUM_THREADS`` says otherwise. On 2 cores with the drift sidecar on, 2 torch threads
        served 124 images/s and 1 thread 205: a parallel pass waits for whichever of its threads another
        process has preempted."""
        if (runtime != TORCH_RUNTIME or "--num_threads" in extra
                or self.env.get("CLINOPS_TORCH_NUM_THREADS")):
            return []
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        return ["--num_threads", str(max(1, cores // 2))]

    def _transformer_argv(self, endpoint: Endpoint) -> list[str]:
        target = (endpoint.predictor_grpc_target if self.predictor_protocol == "grpc-v2"
                  else f"{endpoint.host}:{endpoint.ports.predictor_http}")
        return [sys.executable, "-m", TRANSFORMER_RUNTIME, "--workload", endpoint.workload,
                "--bundle", endpoint.bundle, "--model_name", endpoint.workload,
                "--predictor_host", target, "--predictor_protocol", self.predictor_protocol,
                "--http_port", str(endpoint.ports.transformer_http),
                "--grpc_port", str(endpoint.ports.transformer_grpc), "--bind_host", endpoint.host,
                *(["--drift_url", endpoint.drift_url + "/"] if self.drift else []),
                *self.extra_args.get(f"{endpoint.workload}/transformer", [])]

    def _drift_argv(self, endpoint: Endpoint) -> list[str]:
        return [drift_python(), "-m", DRIFT_RUNTIME, "--workload", endpoint.workload, "--bundle", endpoint.bundle,
                "--host", endpoint.host, "--port", str(endpoint.ports.drift),
                "--log_dir", str(self.drift_dir / endpoint.workload),
                *self.extra_args.get(f"{endpoint.workload}/drift", [])]

    def _spawn(self, key: str, argv: list[str]) -> None:
        log_path = self.log_dir / f"{key.replace('/', '-')}.log"
        log_file = open(log_path, "ab")
        # own session: a terminal's Ctrl-C reaches only us, and we stop the children in order
        env = self.env
        if argv[1:3] == ["-m", DRIFT_RUNTIME]:  # the drift environment has the contract on its path, not installed
            env = {**env, "PYTHONPATH": str(REPO_ROOT), "TRANSFORMERS_VERBOSITY": "error"}
        popen = subprocess.Popen(argv, stdout=log_file, stderr=subprocess.STDOUT, env=env, cwd=REPO_ROOT,
                                 start_new_session=True)
        self.processes[key] = _Process(key, argv, log_path, popen, log_file)

    def _check_interrupted(self) -> None:
        if self.interrupts():
            raise StartInterrupted("start-up interrupted by a signal")

    def _wait_ready(self, key: str, url: str, model: str, deadline: float) -> None:
        process = self.processes[key]
        while time.monotonic() < deadline:
            self._check_interrupted()
            if process.popen.poll() is not None:
                raise RuntimeError(f"{key} exited with {process.popen.returncode} before it was ready:\n"
                                   f"{self.log_tail(key)}")
            if http_ok(f"{url}/v2/health/ready") and http_ok(f"{url}/v2/models/{model}/ready"):
                return
            time.sleep(0.2)
        raise TimeoutError(f"{key} not ready after {self.ready_timeout_s} s:\n{self.log_tail(key)}")

    def _wait_drift(self, workload: str, deadline: float) -> None:
        key = f"{workload}/drift"
        process = self.processes[key]
        while time.monotonic() < deadline:
            self._check_interrupted()
            if process.popen.poll() is not None:
                raise RuntimeError(f"{key} exited with {process.popen.returncode} before it was ready:\n"
                                   f"{self.log_tail(key)}")
            if http_ok(f"{self.endpoints[workload].drift_url}/healthz"):
                return
            time.sleep(0.2)
        raise TimeoutError(f"{key} not ready after {self.ready_timeout_s} s:\n{self.log_tail(key)}")

    def start_drift(self, workload: str, wait: bool = True) -> None:
        if not Path(drift_python()).exists():
            raise RuntimeError(f"no drift environment at {drift_python()}: `make venv` builds it")
        self._spawn(f"{workload}/drift", self._drift_argv(self.endpoints[workload]))
        if wait:
            self._wait_drift(workload, time.monotonic() + self.ready_timeout_s)

    def kill_drift(self, workload: str) -> None:
        """Hard-kill a drift sidecar (``kill -9``: tests of its durability)."""
        self.stop_process(f"{workload}/drift", kill=True)

    def start_predictor(self, workload: str, wait: bool = True) -> None:
        endpoint = self.endpoints[workload]
        self._spawn(f"{workload}/predictor", self._predictor_argv(endpoint))
        if wait:
            self._wait_ready(f"{workload}/predictor", endpoint.predictor_rest_url, workload,
                             time.monotonic() + self.ready_timeout_s)

    def start_transformer(self, workload: str, wait: bool = True) -> None:
        endpoint = self.endpoints[workload]
        self._spawn(f"{workload}/transformer", self._transformer_argv(endpoint))
        if wait:
            self._wait_ready(f"{workload}/transformer", endpoint.rest_url, workload,
                             time.monotonic() + self.ready_timeout_s)

    def start(self) -> LocalStack:
        try:
            for workload in self.endpoints:  # all processes load in parallel, then wait
                self._check_interrupted()
                if self.drift:
                    self.start_drift(workload, wait=False)
                self.start_predictor(workload, wait=False)
                self.start_transformer(workload, wait=False)
            deadline = time.monotonic() + self.ready_timeout_s
            for workload, endpoint in self.endpoints.items():
                self._wait_ready(f"{workload}/predictor", endpoint.predictor_rest_url, workload, deadline)
                self._wait_ready(f"{workload}/transformer", endpoint.rest_url, workload, deadline)
                if self.drift:
                    self._wait_drift(workload, deadline)
        except BaseException:
            self.stop()
            raise
        return self

    def stop_process(self, key: str, timeout: float = 10.0, kill: bool = False, hasten_after: int | None = None) -> None:
        """SIGTERM the child's whole process group (SIGKILL with ``kill``), wait up to ``timeout`` for it,
        then SIGKILL. Waiting polls, so that a stop request past ``hasten_after`` (see ``interrupts``) turns it
        into SIGKILL at once, and a signal handler never runs while this thread blocks inside a lock."""
        process = self.processes.pop(key, None)
        if process is None or process.popen is None:
            return
        popen = process.popen
        hasten_after = self.interrupts() if hasten_after is None else hasten_after
        if popen.poll() is None:
            _signal_group(popen, signal.SIGKILL if kill else signal.SIGTERM)
            deadline = time.monotonic() + timeout
            while popen.poll() is None and time.monotonic() < deadline and self.interrupts() <= hasten_after:
                time.sleep(0.05)
            if popen.poll() is None:
                _signal_group(popen, signal.SIGKILL)
                popen.wait(5)
        # whatever the child left in its group (workers of its own) goes with it
        _signal_group(popen, signal.SIGKILL)
        process.log_file.close()

    def kill_predictor(self, workload: str) -> None:
        """Hard-kill a predictor (tests: the transformer must answer 503, then recover)."""
        self.stop_process(f"{workload}/predictor", kill=True)

    def stop(self) -> None:
        # transformers first, so that nothing calls a predictor that is going away; one more stop request
        # while this runs kills what is left instead of waiting out each grace period
        hasten_after = self.interrupts()
        for key in sorted(self.processes, key=lambda k: not k.endswith("transformer")):
            self.stop_process(key, hasten_after=hasten_after)

    def alive(self) -> dict[str, bool]:
        return {key: p.popen.poll() is None for key, p in self.processes.items()}

    def log_tail(self, key: str, lines: int | None = 30) -> str:
        """The last ``lines`` lines of a process's log (the whole log with ``None``)."""
        path = self.log_dir / f"{key.replace('/', '-')}.log"
        if not path.exists():
            return ""
        text = path.read_text(errors="replace").splitlines()
        return "\n".join(text if lines is None else text[-lines:])

    def __enter__(self) -> LocalStack:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def describe(self) -> str:
        rows = []
        for workload, e in self.endpoints.items():
            rows.append(f"  {workload:<14} REST {e.rest_url}/v2/models/{workload}/infer   gRPC {e.grpc_target}\n"
                        f"  {'':<14} predictor REST {e.predictor_rest_url}  gRPC {e.predictor_grpc_target}  "
                        f"metrics {e.rest_url}/metrics"
                        + (f"\n  {'':<14} drift sidecar {e.drift_url}/v1/drift  metrics {e.drift_url}/metrics"
                           if self.drift else ""))
        return "\n".join(rows)


def s3_config() -> S3Config:
    """The S3 connection for an ``s3://`` bundle store, from the usual variables."""
    return S3Config.from_environ(os.environ)


def champion_bundles(names: tuple[str, ...] = workloads.NAMES) -> dict[str, str]:
    """The bundle URI of each workload's champion (from its champion pointer); workloads with none are left out."""
    store, s3 = get_settings().bundles, s3_config()
    found = {}
    for workload in names:
        pointer = champion.read(store, workload, s3)
        if pointer is not None:
            found[workload] = pointer.bundle_uri
    return found


def home_log_dir(name: str) -> Path:
    """Logs of a stack started from the command line: under the clinops home (``serve/<name>``),
    where they outlive the stack for a look afterwards and the next start overwrites them."""
    return get_settings().home / "serve" / name


class ServeSignals:
    """What SIGINT/SIGTERM (stop) and SIGHUP (restart on the champions as they are now: the pipelines'
    deploy step sends it) asked ``clinops serve`` for.

    The handlers only count, on plain attributes: a handler runs on the main thread between two bytecodes,
    possibly while that thread holds a lock, and ``threading.Event.set`` from one (SIGINT, then SIGTERM while
    the first handler held the Event's lock) hung the process for good with its children still running.
    """

    def __init__(self) -> None:
        self.stops = 0
        self.reload = False

    def install(self) -> ServeSignals:
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, self._stop)
        signal.signal(signal.SIGHUP, self._reload)
        return self

    @staticmethod
    def ignore() -> None:
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, signal.SIG_IGN)

    def _stop(self, _signum, _frame) -> None:
        self.stops += 1

    def _reload(self, _signum, _frame) -> None:
        self.reload = True

    def count(self) -> int:
        return self.stops


def serve_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The flags of ``clinops serve`` (and ``python -m pipelines.local_stack``)."""
    parser.add_argument("--workload", action="append", choices=workloads.NAMES, help="serve only these (default: all)")
    parser.add_argument("--bundle", action="append", metavar="WORKLOAD=URI", help="serve this bundle, not the champion")
    parser.add_argument("--predictor-protocol", default=LocalStackSettings().predictor_protocol,
                        choices=["v2", "grpc-v2"], help="transformer → predictor protocol")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="clinops serve", description=__doc__.split("\n\n")[0])
    return serve(serve_arguments(parser).parse_args(argv))


def serve(args: argparse.Namespace) -> int:
    """Serve until SIGINT/SIGTERM; SIGHUP restarts on the champions as they are now."""
    signals = ServeSignals().install()
    try:
        return _serve(args, signals)
    finally:
        # stopped: one more Ctrl-C while the interpreter exits would kill it by SIGINT (exit status -2)
        signals.ignore()


def _serve(args: argparse.Namespace, signals: ServeSignals) -> int:
    settings = LocalStackSettings()
    overrides = dict(item.partition("=")[::2] for item in args.bundle or [])
    bundles = champion_bundles(tuple(args.workload or workloads.NAMES)) | overrides
    if not bundles:
        print("clinops serve: no bundle to serve — no champion promoted yet. Run `make run` or "
              "`make pipeline WORKLOAD=...` first.", file=sys.stderr)
        return 1

    def new_stack(bundles: dict[str, str]) -> LocalStack:
        return LocalStack(bundles, ports="default", predictor_protocol=args.predictor_protocol, host=settings.host,
                          ready_timeout_s=settings.ready_timeout_s, log_dir=home_log_dir("logs"))

    stack = new_stack(bundles)
    stack.interrupts = signals.count
    home = get_settings().home
    state = ServeState(os.getpid(), RESTARTING, bundles=bundles)
    print(f"starting {', '.join(bundles)} (logs in {stack.log_dir}) …", flush=True)
    try:
        stack.start()
    except StartInterrupted:
        print("stopped before it was serving.")
        return 0
    except (RuntimeError, TimeoutError) as err:
        print(f"clinops serve: {err}", file=sys.stderr)
        return 1
    state.status = SERVING
    state.write(home)
    print("serving (Ctrl-C stops):\n" + stack.describe(), flush=True)
    code = 0
    try:
        while not signals.stops:
            time.sleep(0.2)
            if signals.reload:
                signals.reload = False
                state.status = RESTARTING
                state.write(home)
                stack.stop()
                state.bundles = champion_bundles(tuple(args.workload or workloads.NAMES)) | overrides
                print(f"restarting on {state.bundles} …", flush=True)
                stack = new_stack(state.bundles)
                stack.interrupts = signals.count
                state.generation += 1
                try:
                    stack.start()
                except StartInterrupted:
                    break
                except (RuntimeError, TimeoutError) as err:
                    print(f"clinops serve: restart failed: {err}", file=sys.stderr)
                    state.status, state.error, code = FAILED, str(err), 1
                    state.write(home)
                    break
                state.status = SERVING
                state.write(home)
                print("serving:\n" + stack.describe(), flush=True)
                continue
            dead = [key for key, ok in stack.alive().items() if not ok]
            if dead:
                print(f"clinops serve: {', '.join(dead)} stopped unexpectedly:\n{stack.log_tail(dead[0])}",
                      file=sys.stderr)
                code = 1
                break
    finally:
        print("stopping …", flush=True)
        stack.stop()
        if state.status != FAILED:  # a failed restart's reason stays for the deploy step to read
            ServeState.remove(home, os.getpid())
    print("stopped.")
    return code


if __name__ == "__main__":
    sys.exit(main())
