"""Run one notebook on this machine, without a container: for trusted corpora and machines with no Docker.

The executor runs as a separate process (its kernel a grandchild) under rlimits: address space
(memory), CPU seconds, file size, no core dumps. It is *not* a sandbox: the notebook can read
and write whatever this user can, and open network connections. So the backend refuses to
start unless the caller says the notebooks are trusted (``--trust-notebooks``).
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from ingest.reproduce.docker_backend import BackendUnavailable, _safe_name
from ingest.reproduce.outcome import EXECUTE_SCRIPT, RunOutcome, RunSpec, outcome_from_report, parse_report, read_capped

GRACE_S = 20.0

# executors this process has running, so a stopping worker can kill them
_live_pids: set[int] = set()
_live_lock = threading.Lock()


def kill_live_processes() -> int:
    with _live_lock:
        pids = list(_live_pids)
        _live_pids.clear()
    for pid in pids:
        _kill_tree(pid)
    return len(pids)


class UntrustedNotebooks(BackendUnavailable):
    pass


class LocalBackend:
    name = "local"

    def __init__(self, *, trust_notebooks: bool, python: str | None = None) -> None:
        if not trust_notebooks:
            raise UntrustedNotebooks(
                "the local backend runs notebook code on this machine with no sandbox (it can read your files "
                "and reach the network); use --backend docker, or pass --trust-notebooks if you trust this corpus"
            )
        self.python = python or sys.executable
        self.image = f"local:{self.python}"

    def check(self) -> str:
        probe = subprocess.run([self.python, "-c", "import nbclient, ipykernel, nbformat"], capture_output=True, text=True)
        if probe.returncode != 0:
            raise BackendUnavailable(f"{self.python} cannot import nbclient/ipykernel/nbformat: {probe.stderr.strip()[-500:]}")
        return self.image

    @property
    def digest(self) -> str | None:
        return None

    def run(self, spec: RunSpec) -> RunOutcome:
        limits = spec.limits
        started_at = time.time()
        t0 = time.monotonic()
        jobdir = Path(tempfile.mkdtemp(prefix="nbatlas-local-"))
        observed: dict[str, Any] = {"image": self.image, "image_digest": None, "started_at": started_at}
        proc = None
        try:
            name = _safe_name(spec.name)
            (jobdir / name).write_text(json.dumps(spec.notebook), encoding="utf-8")
            working = jobdir / "working"
            working.mkdir()
            env = {k: v for k, v in os.environ.items() if not k.startswith(("NBATLAS_", "DOCKER_", "PG"))}
            env.update({
                "TMPDIR": str(jobdir), "IPYTHONDIR": str(jobdir / "ipython"),
                "JUPYTER_RUNTIME_DIR": str(jobdir / "runtime"), "PYTHONDONTWRITEBYTECODE": "1",
            })
            env.pop("MPLBACKEND", None)  # the kernel picks the inline backend, so plots become outputs
            if spec.data_dir:
                env["NBATLAS_INPUT"] = str(Path(spec.data_dir).resolve())
            cmd = [
                self.python, str(EXECUTE_SCRIPT), str(jobdir / name), "--workdir", str(working),
                "--timeout", str(spec.timeout_s), "--log", str(jobdir / "kernel.log"),
                "--max-cell-output-bytes", str(limits.max_cell_output_bytes),
                "--max-output-bytes", str(limits.max_output_bytes),
            ]
            memory = limits.memory_mb * 1024 * 1024
            cpu_seconds = int(spec.timeout_s * max(1.0, limits.cpus)) + 30
            file_bytes = limits.scratch_mb * 1024 * 1024

            def apply_limits() -> None:
                # inherited by the kernel: RLIMIT_AS turns an allocation past the limit into MemoryError
                resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
                resource.setrlimit(resource.RLIMIT_CPU, (cpu_seconds, cpu_seconds + 5))
                resource.setrlimit(resource.RLIMIT_FSIZE, (file_bytes, file_bytes))
                resource.setrlimit(resource.RLIMIT_CORE, (0, 0))

            stderr_path = jobdir / "stderr.log"
            with open(stderr_path, "wb") as stderr:
                proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=stderr, stdin=subprocess.DEVNULL,
                                        cwd=working, env=env, preexec_fn=apply_limits, start_new_session=True)
            with _live_lock:
                _live_pids.add(proc.pid)
            result: dict[str, Any] = {}

            def reader() -> None:
                result["raw"], result["too_large"] = read_capped(
                    iter(lambda: proc.stdout.read(1 << 20), b""), limits.max_report_bytes)
                # keep draining so the child never blocks on a full pipe
                for _ in iter(lambda: proc.stdout.read(1 << 20), b""):
                    pass

            thread = threading.Thread(target=reader, daemon=True)
            thread.start()
            try:
                proc.wait(timeout=spec.timeout_s + GRACE_S)
            except subprocess.TimeoutExpired:
                observed["timed_out"] = True
                _kill_tree(proc.pid)
                proc.wait(timeout=30)
            thread.join(timeout=30)
            code = proc.returncode
            observed["exit_code"] = code
            if code == -signal.SIGXCPU:
                observed["timed_out"] = True
            raw = result.get("raw", b"")
            observed["report_bytes"] = len(raw)
            report = None
            if result.get("too_large"):
                observed["detail"] = f"the runner's report exceeded {limits.max_report_bytes} bytes and was dropped"
            else:
                report = parse_report(raw)
                if report is None:
                    tail = stderr_path.read_text(errors="replace")[-2000:] if stderr_path.exists() else ""
                    observed["detail"] = f"no report from the runner (exit code {code}): {tail}"
        finally:
            if proc is not None:
                _kill_tree(proc.pid)  # forked leftovers of the notebook
                with _live_lock:
                    _live_pids.discard(proc.pid)
                if proc.stdout:
                    proc.stdout.close()
            shutil.rmtree(jobdir, ignore_errors=True)
        observed["finished_at"] = time.time()
        observed["wall_s"] = round(time.monotonic() - t0, 6)
        return outcome_from_report(self.name, report, **observed)


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        if ppid == pid:
            found.append(int(entry.name))
    return found


def _kill_tree(pid: int) -> None:
    """Kill the executor's session and the sessions of its descendants (the kernel starts its own)."""
    seen, todo, groups = set(), [pid], set()
    while todo:
        current = todo.pop()
        if current in seen:
            continue
        seen.add(current)
        try:
            groups.add(os.getpgid(current))
        except ProcessLookupError:
            pass
        todo.extend(_children(current))
    groups.discard(os.getpgid(0))  # never our own group
    for group in groups:
        try:
            os.killpg(group, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
