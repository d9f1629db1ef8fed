"""A private Docker engine for the tests: started in a temporary directory, torn down after.

No engine runs on a CI machine by default. This starts ``dockerd`` with all of its state (data
root, exec root, pid file, socket) under one directory, without touching the host's network
(``--bridge=none --iptables=false``: every nbatlas container runs with ``network_mode=none``
anyway, and so does the runner image build), and in its own containerd namespace.

Used three ways:

* ``.ci/docker-engine.sh start`` runs ``python -m tests.docker_engine start --build-image`` and
  evals the ``export DOCKER_HOST=...`` it prints; ``... stop`` tears it down;
* the ``docker_client`` fixture of ``tests/test_reproduce*.py`` uses ``$DOCKER_HOST`` when set,
  else starts an engine itself for the test session (root with ``dockerd`` installed);
* by hand: ``python -m tests.docker_engine start --state-dir /tmp/x`` / ``stop --state-dir /tmp/x``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

STATE_FILE = "engine.json"


class EngineUnavailable(RuntimeError):
    """No engine could be started here; the message says why (used as the tests' skip reason)."""


@dataclass
class PrivateEngine:
    state_dir: Path
    pid: int
    started_in_s: float

    @property
    def socket(self) -> Path:
        return self.state_dir / "docker.sock"

    @property
    def url(self) -> str:
        return f"unix://{self.socket}"

    def client(self, timeout: int = 120):
        import docker

        return docker.DockerClient(base_url=self.url, timeout=timeout)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie child still "exists": look at its state
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


def default_data_root() -> Path | None:
    """Where to keep the engine's images between runs: $NBATLAS_DOCKER_DATA_ROOT, else the CI cache
    when writable, else nowhere (a temporary data root, deleted at stop)."""
    given = os.environ.get("NBATLAS_DOCKER_DATA_ROOT")
    if given:
        return Path(given)
    ci = Path("/var/cache/nbatlas-ci")
    if ci.is_dir() and os.access(ci, os.W_OK):
        return ci / "docker-data"
    return None


def start_engine(state_dir: Path | None = None, *, data_root: Path | None = None, timeout: float = 60.0) -> PrivateEngine:
    """Start dockerd with its state in ``state_dir`` (a new temp dir by default). ``data_root``: keep
    images there instead (a cache directory kept between CI runs: the runner image is then simply
    there, with nothing to load, and nothing large to delete at the end)."""
    dockerd = shutil.which("dockerd")
    if dockerd is None:
        raise EngineUnavailable("dockerd is not installed (apt-get install -y docker.io)")
    if os.geteuid() != 0:
        raise EngineUnavailable("starting a private dockerd needs root (or set DOCKER_HOST to a running engine)")
    if data_root is not None and _data_root_in_use(Path(data_root)):
        data_root = None  # two engines on one data root corrupt it: this one gets a temporary one
    # unix socket paths are limited to ~108 bytes: keep the directory short
    made_here = state_dir is None
    state_dir = Path(state_dir) if state_dir else Path(tempfile.mkdtemp(prefix="nbatlas-docker-", dir="/tmp"))
    state_dir.mkdir(parents=True, exist_ok=True)
    if len(str(state_dir / "exec" / "containerd" / "containerd.sock")) > 100:
        raise EngineUnavailable(f"state directory path too long for unix sockets: {state_dir}")
    existing = _read_state(state_dir)
    if existing and _alive(existing.pid) and existing.socket.exists():
        return existing

    data_root = Path(data_root) if data_root else state_dir / "data"
    data_root.mkdir(parents=True, exist_ok=True)
    log = open(state_dir / "dockerd.log", "ab")
    cmd = [
        dockerd,
        "--data-root", str(data_root),
        "--exec-root", str(state_dir / "exec"),
        "--pidfile", str(state_dir / "dockerd.pid"),
        "-H", f"unix://{state_dir / 'docker.sock'}",
        "--bridge=none", "--iptables=false", "--ip-masq=false",
        "--containerd-namespace", "nbatlas",
        "--containerd-plugins-namespace", "nbatlas-plugins",
        "--log-level", "warn",
    ]
    t0 = time.monotonic()
    # its own session: a Ctrl-C in the terminal that started the tests does not kill it halfway
    proc = subprocess.Popen(cmd, stdout=log, stderr=log, stdin=subprocess.DEVNULL, start_new_session=True)
    engine = PrivateEngine(state_dir, proc.pid, 0.0)
    deadline = t0 + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = _log_tail(state_dir)
            if made_here:
                stop_engine(state_dir)
            raise EngineUnavailable(f"dockerd exited with {proc.returncode} at start; its log: {tail}")
        if engine.socket.exists():
            try:
                client = engine.client(timeout=5)
                client.ping()
                client.close()
                break
            except Exception:  # noqa: BLE001 - not ready yet
                pass
        time.sleep(0.2)
    else:
        _terminate(proc.pid)
        tail = _log_tail(state_dir)
        if made_here:
            stop_engine(state_dir)
        raise EngineUnavailable(f"dockerd did not answer within {timeout:.0f}s; its log: {tail}")
    engine.started_in_s = round(time.monotonic() - t0, 3)
    (state_dir / STATE_FILE).write_text(json.dumps({"pid": proc.pid, "started_in_s": engine.started_in_s}))
    return engine


def _data_root_in_use(data_root: Path) -> bool:
    """Whether a running dockerd already uses ``data_root``."""
    wanted = str(data_root.resolve())
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            args = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if not args or not args[0].endswith(b"dockerd"):
            continue
        for flag, value in zip(args, args[1:]):
            if flag == b"--data-root" and str(Path(value.decode(errors="replace")).resolve()) == wanted:
                return True
    return False


def _log_tail(state_dir: Path, limit: int = 2000) -> str:
    try:
        return (state_dir / "dockerd.log").read_text(errors="replace")[-limit:]
    except OSError:
        return "(no log)"


def _read_state(state_dir: Path) -> PrivateEngine | None:
    try:
        data = json.loads((state_dir / STATE_FILE).read_text())
        return PrivateEngine(state_dir, int(data["pid"]), float(data.get("started_in_s", 0)))
    except (OSError, ValueError, KeyError):
        return None


def _terminate(pid: int, grace: float = 20.0) -> None:
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and _alive(pid):
        time.sleep(0.1)
        try:
            os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            pass
    if _alive(pid):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _unmount_under(path: Path) -> None:
    """dockerd normally unmounts everything; after a crash overlay/shm mounts may remain."""
    prefix = str(path.resolve())
    try:
        mounts = [line.split()[1] for line in Path("/proc/self/mounts").read_text().splitlines()]
    except OSError:
        return
    for target in sorted((m for m in mounts if m.startswith(prefix)), key=len, reverse=True):
        subprocess.run(["umount", "-l", target], check=False, capture_output=True)


def stop_engine(state_dir: Path, *, remove: bool = True, background_remove: bool = False) -> None:
    """Stop the engine and delete its state directory (not a ``data_root`` kept elsewhere).
    Deleting an image's layers takes a while (tens of thousands of files): ``background_remove``
    leaves it to a detached ``rm`` so a test session does not wait for it."""
    state_dir = Path(state_dir)
    engine = _read_state(state_dir)
    pids = []
    if engine:
        pids.append(engine.pid)
    try:
        pids.append(int((state_dir / "dockerd.pid").read_text().strip()))
    except (OSError, ValueError):
        pass
    for pid in dict.fromkeys(pids):
        _terminate(pid)
    _unmount_under(state_dir)
    if remove and background_remove and shutil.which("rm"):
        trash = state_dir.with_name(state_dir.name + ".removing")
        try:
            state_dir.rename(trash)
            subprocess.Popen(["rm", "-rf", str(trash)], start_new_session=True,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
            return
        except OSError:
            pass
    if remove:
        shutil.rmtree(state_dir, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.docker_engine", description="private dockerd for tests")
    sub = parser.add_subparsers(dest="cmd", required=True)
    start = sub.add_parser("start", help="start an engine; print shell exports on stdout")
    start.add_argument("--state-dir", type=Path, default=None)
    start.add_argument("--data-root", type=Path, default=None,
                       help="keep images here, kept after stop [default: $NBATLAS_DOCKER_DATA_ROOT, else "
                            "/var/cache/nbatlas-ci/docker-data when writable, else a temp dir]")
    start.add_argument("--build-image", action="store_true", help="also build (or load from cache) the runner image")
    start.add_argument("--cache-dir", type=Path, default=None)
    stop = sub.add_parser("stop", help="stop the engine and remove its state")
    stop.add_argument("--state-dir", type=Path, required=True)
    args = parser.parse_args(argv)

    if args.cmd == "stop":
        stop_engine(args.state_dir)
        print(f"docker engine in {args.state_dir} stopped", file=sys.stderr)
        return 0

    engine, problem = _start_or_reset(args.state_dir, args.data_root or default_data_root())
    if engine is None:
        print(f"docker engine: not started: {problem}", file=sys.stderr)
        print(f"export NBATLAS_DOCKER_UNAVAILABLE={_shell_quote(problem[:500])}")
        return 0
    try:
        _tidy(engine)
    except Exception as exc:  # noqa: BLE001 - housekeeping only
        print(f"docker engine: tidy-up skipped: {exc}", file=sys.stderr)
    print(f"docker engine: started in {engine.started_in_s}s at {engine.url}", file=sys.stderr)
    print(f"export DOCKER_HOST={engine.url}")
    print(f"export NBATLAS_DOCKER_STATE={engine.state_dir}")
    if args.build_image:
        from ingest.reproduce.runner_image import RunnerImageError, build_runner_image

        t0 = time.monotonic()
        try:
            report = build_runner_image(engine.client(timeout=600), cache=args.cache_dir,
                                        progress=lambda m: print(f"runner image: {m}", file=sys.stderr))
        except (RunnerImageError, Exception) as exc:  # noqa: BLE001 - tests skip with this reason
            print(f"runner image: not built: {exc}", file=sys.stderr)
            print(f"export NBATLAS_RUNNER_UNAVAILABLE={_shell_quote(str(exc)[:500])}")
            return 0
        print(f"runner image: {report.tag} ({report.from_cache}) in {time.monotonic() - t0:.1f}s "
              f"{json.dumps(report.seconds)}", file=sys.stderr)
    return 0


def _start_or_reset(state_dir: Path | None, data_root: Path | None) -> tuple[PrivateEngine | None, str]:
    try:
        return start_engine(state_dir, data_root=data_root), ""
    except EngineUnavailable as exc:
        problem = str(exc)
    if data_root is None:
        return None, problem
    # a kept data root dockerd cannot use (a crash, another version): start once more with an empty one
    print(f"docker engine: {problem}; retrying with an empty data root", file=sys.stderr)
    if state_dir is not None:
        stop_engine(state_dir, remove=False)
    shutil.rmtree(data_root, ignore_errors=True)
    try:
        return start_engine(state_dir, data_root=data_root), ""
    except EngineUnavailable as exc:
        return None, str(exc)


def _tidy(engine: PrivateEngine) -> None:
    """A kept data root may hold containers of an interrupted run and superseded runner images."""
    client = engine.client(timeout=60)
    for container in client.containers.list(all=True, filters={"label": "org.nbatlas.role=run"}):
        container.remove(force=True)
    client.images.prune(filters={"dangling": True})
    client.close()


def _shell_quote(text: str) -> str:
    return "'" + text.replace("'", "'\"'\"'") + "'"


if __name__ == "__main__":
    sys.exit(main())
