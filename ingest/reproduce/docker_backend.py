"""Run one notebook in one throw-away container (docker SDK).

Isolation: no network, a memory limit with no swap on top, a CPU quota, a pids limit, a
read-only root file system with size-capped tmpfs scratch (/tmp, /kaggle/working), a non-root
user, every capability dropped and no-new-privileges. The notebook and the executor script are
bind-mounted read-only at /nbatlas, the data read-only at /kaggle/input. The executor stops the
notebook at the timeout itself (keeping the partial outputs); nbatlas kills the container a
grace period later in case it does not.

Nothing leaks: every container is removed in a ``finally``; containers of a run interrupted by a
signal are removed by the handler installed with :func:`install_cleanup_handlers`; containers
left by a process killed with SIGKILL are found by their labels (owner process, deadline) and
removed by :func:`sweep_orphans`, which every worker runs when it starts and then periodically; it
also removes the job folders of gone processes, named after the process that made them.
"""

from __future__ import annotations

import atexit
import json
import os
import re
import shutil
import signal
import socket
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from ingest.reproduce.outcome import (
    EXECUTE_SCRIPT,
    RunOutcome,
    RunSpec,
    outcome_from_report,
    owner_alive,
    owner_id,
    parse_report,
    read_capped,
)
from ingest.reproduce.runner_image import RUNNER_GID, RUNNER_UID, image_digest

ROLE_LABEL = "org.nbatlas.role"
OWNER_LABEL = "org.nbatlas.owner"
DEADLINE_LABEL = "org.nbatlas.deadline"
JOBDIR_LABEL = "org.nbatlas.jobdir"  # the host directory mounted at /nbatlas (swept by its name: sweep_job_folders)
GRACE_S = 20.0  # after the timeout: the executor's own kernel shutdown and report

# containers this process has running, so a signal handler can remove them
_live: dict[str, Any] = {}
_live_lock = threading.Lock()
_atexit_installed = False
_signals_installed = False


class DockerBackend:
    name = "docker"

    def __init__(self, client, image: str, *, user: str = f"{RUNNER_UID}:{RUNNER_GID}") -> None:
        self.client = client
        self.image = image
        self.user = user
        self._digest: str | None = None
        self.owner = owner_id()

    def check(self) -> str:
        """Fail early, with a clear message, when the engine or the image is missing."""
        import docker.errors

        try:
            self.client.ping()
        except Exception as exc:  # noqa: BLE001 - every transport error means the same here
            raise BackendUnavailable(f"cannot reach the Docker engine ({exc}); is dockerd running, DOCKER_HOST set?") from exc
        try:
            self.client.images.get(self.image)
        except docker.errors.ImageNotFound as exc:
            raise BackendUnavailable(
                f"the image {self.image!r} is not in the engine: `docker pull {self.image}` where a registry is "
                "reachable, or `nbatlas runner-image build` and --image nbatlas-runner:latest"
            ) from exc
        return self.digest or self.image

    @property
    def digest(self) -> str | None:
        if self._digest is None:
            self._digest = image_digest(self.client, self.image)
        return self._digest

    def run(self, spec: RunSpec) -> RunOutcome:
        import docker.errors
        import requests.exceptions
        from docker.types import LogConfig, Mount, Ulimit

        install_cleanup_handlers()
        limits = spec.limits
        started_at = time.time()
        t0 = time.monotonic()
        jobdir = Path(tempfile.mkdtemp(prefix=_jobdir_prefix(self.owner)))
        container = None
        observed: dict[str, Any] = {"image": self.image, "image_digest": self.digest, "started_at": started_at}
        report_raw = b""
        try:
            name = _safe_name(spec.name)
            (jobdir / name).write_text(json.dumps(spec.notebook), encoding="utf-8")
            shutil.copyfile(EXECUTE_SCRIPT, jobdir / "execute.py")
            os.chmod(jobdir, 0o755)
            for path in jobdir.iterdir():
                os.chmod(path, 0o644)
            mounts = [Mount("/nbatlas", str(jobdir), type="bind", read_only=True)]
            if spec.data_dir:
                mounts.append(Mount("/kaggle/input", str(Path(spec.data_dir).resolve()), type="bind", read_only=True))
            command = [
                "python3", "/nbatlas/execute.py", f"/nbatlas/{name}",
                "--workdir", "/kaggle/working", "--timeout", str(spec.timeout_s),
                "--log", "/tmp/nbatlas-kernel.log",
                "--max-cell-output-bytes", str(limits.max_cell_output_bytes),
                "--max-output-bytes", str(limits.max_output_bytes),
            ]
            labels = {
                ROLE_LABEL: "run",
                OWNER_LABEL: self.owner,
                DEADLINE_LABEL: str(int(started_at + spec.timeout_s + GRACE_S + 60)),
                JOBDIR_LABEL: str(jobdir),
                **spec.labels,
            }
            uid, _, gid = self.user.partition(":")
            memory = f"{limits.memory_mb}m"
            try:
                container = self.client.containers.create(
                    self.image,
                    command,
                    user=self.user,
                    network_mode="none",
                    mem_limit=memory,
                    memswap_limit=memory,  # equal: no swap beyond the memory limit
                    nano_cpus=int(limits.cpus * 1e9),
                    pids_limit=limits.pids,
                    read_only=True,
                    tmpfs={
                        "/tmp": f"rw,nosuid,nodev,size={limits.tmp_mb}m,mode=1777",
                        "/kaggle/working": f"rw,nosuid,nodev,size={limits.scratch_mb}m,mode=0770,uid={uid},gid={gid or uid}",
                    },
                    cap_drop=["ALL"],
                    security_opt=["no-new-privileges"],
                    init=True,
                    mounts=mounts,
                    environment={
                        "HOME": "/tmp", "TMPDIR": "/tmp", "MPLCONFIGDIR": "/tmp/matplotlib",
                        "IPYTHONDIR": "/tmp/ipython", "JUPYTER_RUNTIME_DIR": "/tmp/jupyter-runtime",
                        "JUPYTER_DATA_DIR": "/tmp/jupyter-data", "PYTHONDONTWRITEBYTECODE": "1",
                        "KAGGLE_KERNEL_RUN_TYPE": "Batch",
                    },
                    working_dir="/kaggle/working",
                    labels=labels,
                    # the engine keeps at most this much of what the container prints
                    log_config=LogConfig(type="json-file", config={
                        "max-size": f"{max(1, limits.max_report_bytes // 1_000_000 + 2)}m", "max-file": "1"}),
                    ulimits=[Ulimit(name="core", soft=0, hard=0), Ulimit(name="nofile", soft=4096, hard=4096)],
                    detach=True,
                )
            except docker.errors.ImageNotFound as exc:
                return outcome_from_report(self.name, None, detail=f"image not found: {exc}", **observed)
            except docker.errors.APIError as exc:
                return outcome_from_report(self.name, None, detail=f"container create failed: {exc}", **observed)
            with _live_lock:
                _live[container.id] = self.client
            container.start()
            hard_timeout = spec.timeout_s + GRACE_S
            try:
                container.wait(timeout=hard_timeout)
            except (requests.exceptions.ReadTimeout, requests.exceptions.ConnectionError):
                observed["timed_out"] = True
                _kill_quietly(container)
                container.wait(timeout=30)
            container.reload()
            state = container.attrs.get("State") or {}
            observed["exit_code"] = state.get("ExitCode")
            observed["oom_killed"] = bool(state.get("OOMKilled"))
            report_raw, too_large = read_capped(
                container.logs(stdout=True, stderr=False, stream=True, follow=False), limits.max_report_bytes)
            observed["report_bytes"] = len(report_raw)
            if too_large:
                observed["detail"] = f"the runner's report exceeded {limits.max_report_bytes} bytes and was dropped"
                report_raw = b""
            report = parse_report(report_raw)
            if report is None and not observed.get("detail"):
                stderr = container.logs(stdout=False, stderr=True, tail=40).decode("utf-8", "replace")
                observed["detail"] = f"no report from the runner (exit code {observed['exit_code']}): {stderr[-2000:]}"
        except docker.errors.APIError as exc:
            report = None
            observed["detail"] = f"Docker engine error: {exc}"
        finally:
            if container is not None:
                _remove_quietly(container)
                with _live_lock:
                    _live.pop(container.id, None)
            shutil.rmtree(jobdir, ignore_errors=True)
        observed["finished_at"] = time.time()
        observed["wall_s"] = round(time.monotonic() - t0, 6)
        return outcome_from_report(self.name, report, **observed)


class BackendUnavailable(RuntimeError):
    """The backend cannot run anything here (no engine, no image, not trusted)."""


def _safe_name(name: str) -> str:
    base = os.path.basename(name or "notebook.ipynb")
    cleaned = "".join(c if c.isalnum() or c in "-_." else "_" for c in base)[:120] or "notebook"
    return cleaned if cleaned.endswith(".ipynb") else cleaned + ".ipynb"


def _kill_quietly(container) -> None:
    try:
        container.kill()
    except Exception:  # noqa: BLE001 - already gone is fine
        pass


def _remove_quietly(container) -> None:
    for _ in range(3):
        try:
            container.remove(force=True, v=True)
            return
        except Exception as exc:  # noqa: BLE001
            if "No such container" in str(exc) or "is already in progress" in str(exc):
                return
            time.sleep(0.5)


def remove_live_containers() -> int:
    """Remove every container this process still has running (signal handlers, atexit)."""
    with _live_lock:
        items = list(_live.items())
        _live.clear()
    for container_id, client in items:
        try:
            client.api.remove_container(container_id, force=True, v=True)
        except Exception:  # noqa: BLE001 - best effort at shutdown
            pass
    return len(items)


def install_cleanup_handlers() -> None:
    """Remove our containers at exit and on SIGTERM/SIGINT/SIGHUP (then let the signal act as before).
    Signal handlers can only be set from the main thread; from another, only the exit hook is set."""
    global _atexit_installed, _signals_installed
    if not _atexit_installed:
        atexit.register(remove_live_containers)
        _atexit_installed = True
    if _signals_installed or threading.current_thread() is not threading.main_thread():
        return
    _signals_installed = True
    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        previous = signal.getsignal(signum)

        def handler(num, frame, previous=previous):
            remove_live_containers()
            if callable(previous):
                previous(num, frame)
            elif previous == signal.SIG_DFL:
                signal.signal(num, signal.SIG_DFL)
                os.kill(os.getpid(), num)

        signal.signal(signum, handler)


def our_containers(client, *, all_states: bool = True) -> list[dict]:
    """Run containers in the engine, as the list endpoint gives them (Id, Names, Labels, State).
    The low-level call on purpose: ``containers.list`` inspects each one afterwards and fails on a
    container removed in between."""
    return client.api.containers(all=all_states, filters={"label": f"{ROLE_LABEL}=run"})


def _jobdir_prefix(owner: str) -> str:
    """A job folder's name says which process made it (pid and start time, as in ``owner_id``)."""
    _, pid, started = owner.rsplit(":", 2)
    return f"nbatlas-run-{pid}.{started}-"


_JOBDIR_NAME = re.compile(r"nbatlas-run-(\d+)\.(\d+)-")


def sweep_job_folders() -> int:
    """Remove the job folders of run processes on this host that are gone. Found by name, not through
    their containers: a worker killed between making its folder and creating its container leaves a
    folder that no container names."""
    host = socket.gethostname()
    removed = 0
    for folder in Path(tempfile.gettempdir()).glob("nbatlas-run-*"):
        made_by = _JOBDIR_NAME.match(folder.name)
        if made_by and owner_alive(f"{host}:{made_by[1]}:{made_by[2]}") is False:
            shutil.rmtree(folder, ignore_errors=True)
            removed += 1
    return removed


def sweep_orphans(client, *, now: float | None = None) -> int:
    """Remove run containers whose owner process is gone (this host) or whose deadline passed, then
    the job folders of gone processes."""
    now = now or time.time()
    removed = 0
    try:
        containers = our_containers(client)
    except Exception:  # noqa: BLE001 - no engine: no containers to sweep, only folders
        containers = []
    for container in containers:
        labels = container.get("Labels") or {}
        alive = owner_alive(labels.get(OWNER_LABEL, ""))
        try:
            deadline = float(labels.get(DEADLINE_LABEL, "0"))
        except ValueError:
            deadline = 0.0
        if alive is False or deadline < now:
            try:
                client.api.remove_container(container["Id"], force=True, v=True)
                removed += 1
            except Exception:  # noqa: BLE001 - gone already, or being removed by its owner
                pass
    sweep_job_folders()
    return removed
