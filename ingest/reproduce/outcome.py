"""What a backend is asked to run and what it hands back, shared by the docker and local backends."""

from __future__ import annotations

import json
import os
import socket
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ingest.reproduce.execute import MARKER

STATUSES = ("ok", "error", "timeout", "oom", "killed", "infrastructure_error")
EXECUTE_SCRIPT = Path(__file__).with_name("execute.py")


@dataclass(frozen=True)
class Limits:
    """Resources of one run. Defaults suit a typical Kaggle notebook on a small machine."""

    memory_mb: int = 2048
    cpus: float = 1.0
    pids: int = 256
    scratch_mb: int = 1024  # /kaggle/working (tmpfs)
    tmp_mb: int = 512  # /tmp (tmpfs)
    max_cell_output_bytes: int = 2_000_000
    max_output_bytes: int = 32_000_000  # all outputs of the executed notebook together

    @property
    def max_report_bytes(self) -> int:
        # the report is the outputs (base64 images, JSON-escaped text) plus cells and metadata
        return int(self.max_output_bytes * 2.2) + 4_000_000

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class RunSpec:
    notebook: dict[str, Any]  # nbformat v4 JSON
    name: str = "notebook.ipynb"
    timeout_s: float = 600.0
    limits: Limits = field(default_factory=Limits)
    data_dir: Path | None = None
    labels: dict[str, str] = field(default_factory=dict)


@dataclass
class RunOutcome:
    backend: str
    status: str
    image: str | None = None
    image_digest: str | None = None
    ename: str | None = None
    evalue: str | None = None
    traceback: list[str] | None = None
    failing_cell: int | None = None
    cells: list[dict[str, Any]] = field(default_factory=list)
    notebook: dict[str, Any] | None = None  # the executed notebook (outputs capped)
    started_at: float | None = None  # epoch seconds
    finished_at: float | None = None
    wall_s: float | None = None  # as seen by nbatlas, container life included
    run_s: float | None = None  # as measured inside the sandbox
    kernel_startup_s: float | None = None
    exit_code: int | None = None
    oom_killed: bool = False
    timed_out: bool = False
    truncated: bool = False
    output_bytes: int | None = None
    report_bytes: int | None = None
    environment: dict[str, Any] = field(default_factory=dict)
    log_tail: str | None = None
    detail: str | None = None  # what nbatlas itself observed (why infrastructure_error, ...)

    @property
    def overhead_s(self) -> float | None:
        if self.wall_s is None or self.run_s is None:
            return None
        return round(max(0.0, self.wall_s - self.run_s), 6)


def read_capped(chunks, cap: int) -> tuple[bytes, bool]:
    """Join ``chunks`` up to ``cap`` bytes; the flag says whether more was there (and dropped)."""
    buf = bytearray()
    for chunk in chunks:
        room = cap - len(buf)
        if len(chunk) > room:
            buf += chunk[:room]
            return bytes(buf), True
        buf += chunk
    return bytes(buf), False


def parse_report(raw: bytes) -> dict[str, Any] | None:
    """The JSON report after the marker line, or None when the runner died before writing it."""
    at = raw.rfind(b"\n" + MARKER + b"\n")
    if at < 0:
        return None
    body = raw[at + len(MARKER) + 2:].strip()
    try:
        report = json.loads(body)
    except ValueError:
        return None
    return report if isinstance(report, dict) else None


def outcome_from_report(backend: str, report: dict[str, Any] | None, **observed: Any) -> RunOutcome:
    """Merge what the runner reported with what the host observed (exit code, OOM, timeout)."""
    outcome = RunOutcome(backend=backend, status="infrastructure_error", **observed)
    if report is None:
        if outcome.timed_out:
            outcome.status = "timeout"
        elif outcome.oom_killed:
            outcome.status = "oom"
        elif outcome.exit_code in (137, -9, 143, -15):
            outcome.status = "killed"
        else:
            outcome.detail = outcome.detail or f"the runner wrote no report (exit code {outcome.exit_code})"
        return outcome
    outcome.status = report.get("status") if report.get("status") in STATUSES else "infrastructure_error"
    outcome.ename = report.get("ename")
    outcome.evalue = report.get("evalue")
    outcome.traceback = report.get("traceback")
    outcome.failing_cell = report.get("failing_cell")
    outcome.cells = report.get("cells") or []
    outcome.notebook = report.get("notebook")
    outcome.run_s = report.get("duration_s")
    outcome.kernel_startup_s = report.get("kernel_startup_s")
    outcome.truncated = bool(report.get("truncated"))
    outcome.output_bytes = report.get("output_bytes")
    outcome.log_tail = report.get("log_tail")
    outcome.environment = {k: report.get(k) for k in ("python", "platform", "packages") if report.get(k)}
    if outcome.oom_killed and outcome.status in ("killed", "error", "infrastructure_error"):
        # the kernel died under the memory limit: that is the cause, whatever the runner saw
        outcome.status = "oom"
        for cell in outcome.cells:
            if cell.get("status") in ("killed", "error"):
                cell["status"] = "oom"
    if outcome.timed_out and outcome.status != "ok":
        outcome.status = "timeout"
    return outcome


def _start_time(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return "0"


def owner_id() -> str:
    """Who started a container: host, pid and the pid's start time (pids are reused)."""
    pid = os.getpid()
    return f"{socket.gethostname()}:{pid}:{_start_time(pid)}"


def owner_alive(owner: str) -> bool | None:
    """Whether the process named by ``owner`` still runs; None when it is on another host."""
    try:
        host, pid_text, started = owner.rsplit(":", 2)
        pid = int(pid_text)
    except ValueError:
        return False
    if host != socket.gethostname():
        return None
    if not Path(f"/proc/{pid}").exists():
        return False
    return _start_time(pid) == started

