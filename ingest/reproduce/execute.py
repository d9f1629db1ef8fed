"""Execute ONE notebook with nbclient and report what happened, as JSON, on the original stdout.

This file is the program that runs *inside* the sandbox: the docker backend bind-mounts it
read-only into the runner container, the local backend starts it as a child process under
rlimits. It therefore imports only the standard library, nbformat and nbclient, which every
runner image (ours, or a Jupyter docker-stacks image) has, and never anything from nbatlas.

Protocol: the report is written once, at the end, to a private duplicate of the stdout this
process was started with, after the line ``NBATLAS-RESULT-V1``. The kernel's own stdout and
stderr (C extensions, ``os.system``, crashes) are redirected to a log file before the kernel
starts, so nothing the notebook does can write into the report channel; the log's tail is
included in the report. Output sizes are capped while messages arrive (per cell and in total),
so a notebook printing 100 MB costs neither this process nor nbatlas that memory.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sys
import time
import traceback
from typing import Any

MARKER = b"NBATLAS-RESULT-V1"

# the packages whose versions explain most differences between an original run and ours
_REPORTED_PACKAGES = (
    "numpy", "pandas", "matplotlib", "scipy", "scikit-learn", "seaborn", "ipykernel", "nbclient",
)


def _output_size(out: dict[str, Any]) -> int:
    kind = out.get("output_type")
    if kind == "stream":
        return len(out.get("text") or "")
    if kind == "error":
        return sum(len(line) for line in out.get("traceback") or []) + len(out.get("evalue") or "")
    data = out.get("data") or {}
    size = 0
    for value in data.values():
        if isinstance(value, str):
            size += len(value)
        elif isinstance(value, list):
            size += sum(len(v) for v in value if isinstance(v, str))
        else:
            size += len(json.dumps(value, default=str))
    return size


def _oom_kills() -> int | None:
    """The memory cgroup's OOM-kill counter as seen from inside (v2, then v1); None if unreadable."""
    for path in ("/sys/fs/cgroup/memory.events", "/sys/fs/cgroup/memory/memory.oom_control"):
        try:
            with open(path) as fh:
                for line in fh:
                    key, _, value = line.partition(" ")
                    if key == "oom_kill":
                        return int(value)
        except (OSError, ValueError):
            continue
    return None


def _package_versions() -> dict[str, str]:
    from importlib import metadata

    found = {}
    for name in _REPORTED_PACKAGES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return found


def _tail(path: str | None, limit: int = 16_384) -> str:
    if not path:
        return ""
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - limit))
            return fh.read().decode("utf-8", "replace")
    except OSError:
        return ""


def _make_client_class():
    from nbclient import NotebookClient

    class CappedClient(NotebookClient):
        """nbclient with output caps applied as each output message arrives."""

        max_cell_bytes = 2_000_000
        max_total_bytes = 32_000_000

        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.total_bytes = 0
            self.cell_bytes: dict[int, int] = {}
            self.cell_dropped: dict[int, int] = {}

        def output(self, outs, msg, display_id, cell_index):
            out = super().output(outs, msg, display_id, cell_index)
            if out is None:
                return out
            size = _output_size(out)
            used = self.cell_bytes.get(cell_index, 0)
            room = min(self.max_cell_bytes - used, self.max_total_bytes - self.total_bytes)
            if size <= room:
                self.cell_bytes[cell_index] = used + size
                self.total_bytes += size
                return out
            # over budget: keep the head of a stream (useful to read), drop anything else
            self.cell_dropped[cell_index] = self.cell_dropped.get(cell_index, 0) + size
            if out.get("output_type") == "stream" and room > 0:
                out["text"] = out["text"][:room]
                self.cell_bytes[cell_index] = used + room
                self.total_bytes += room
                self.cell_dropped[cell_index] -= room
                return out
            if outs and outs[-1] is out:
                outs.pop()
            return None

    return CappedClient


def _seed_matplotlib_cache() -> None:
    """Copy a font cache built into the image into the run's empty config dir: matplotlib would
    otherwise rebuild it, seconds per run, on its first import."""
    import shutil

    seed, target = os.environ.get("NBATLAS_MPLCONFIG_SEED"), os.environ.get("MPLCONFIGDIR")
    if seed and target and os.path.isdir(seed) and not os.path.exists(target):
        try:
            shutil.copytree(seed, target)
        except OSError:
            pass


def _clean_for_run(nb) -> None:
    """Drop the original outputs so the executed notebook holds only what this run produced."""
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None


async def _run(args, report: dict[str, Any]) -> None:
    import nbformat
    from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError

    started = time.monotonic()
    deadline = started + args.timeout

    try:
        nb = nbformat.read(args.notebook, as_version=4)
    except Exception as exc:  # a notebook nbformat cannot read is the notebook's fault, not ours
        report.update(status="error", ename=type(exc).__name__, evalue=str(exc)[:2000], phase="read")
        return
    _clean_for_run(nb)
    os.makedirs(args.workdir, exist_ok=True)
    # the notebook lives in the working directory, as on Kaggle
    try:
        nbformat.write(nb, os.path.join(args.workdir, os.path.basename(args.notebook)))
    except OSError:
        pass

    _seed_matplotlib_cache()
    client_class = _make_client_class()
    client_class.max_cell_bytes = args.max_cell_output_bytes
    client_class.max_total_bytes = args.max_output_bytes
    client = client_class(
        nb,
        kernel_name=args.kernel,
        timeout_func=lambda cell: max(1, int(deadline - time.monotonic() + 0.999)),
        startup_timeout=max(1, int(min(args.startup_timeout, args.timeout))),
        allow_errors=False,
        record_timing=True,
        coalesce_streams=True,
        shutdown_kernel="immediate",
        resources={"metadata": {"path": args.workdir}},
    )

    cells: list[dict[str, Any]] = []
    for index, cell in enumerate(nb.cells):
        runnable = cell.cell_type == "code" and bool(cell.source.strip())
        cells.append({"index": index, "cell_type": cell.cell_type, "status": "not_run" if runnable else "skipped",
                      "duration_s": None, "execution_count": None, "truncated_bytes": 0})
    report["cells"] = cells
    report["notebook"] = nb
    oom_before = _oom_kills()

    def finish_cell(index: int, status: str, t0: float) -> None:
        cells[index]["status"] = status
        cells[index]["duration_s"] = round(time.monotonic() - t0, 6)
        cells[index]["execution_count"] = nb.cells[index].get("execution_count")

    t_kernel = time.monotonic()
    try:
        async with client.async_setup_kernel():
            report["kernel_startup_s"] = round(time.monotonic() - t_kernel, 6)
            for index, cell in enumerate(nb.cells):
                if cells[index]["status"] == "skipped":
                    continue
                if time.monotonic() >= deadline:
                    report.update(status="timeout", failing_cell=index)
                    return
                t0 = time.monotonic()
                try:
                    await client.async_execute_cell(cell, index, execution_count=client.code_cells_executed + 1)
                except CellExecutionError as exc:
                    finish_cell(index, "error", t0)
                    error = next((o for o in cell.outputs if o.get("output_type") == "error"), {})
                    status = "oom" if exc.ename == "MemoryError" else "error"
                    cells[index]["status"] = status
                    report.update(status=status, ename=exc.ename, evalue=(exc.evalue or "")[:10_000],
                                  traceback=list(error.get("traceback") or [])[-200:], failing_cell=index)
                    return
                except CellTimeoutError:
                    finish_cell(index, "timeout", t0)
                    report.update(status="timeout", failing_cell=index)
                    return
                except DeadKernelError:
                    oom_after = _oom_kills()
                    died_of_oom = oom_before is not None and oom_after is not None and oom_after > oom_before
                    status = "oom" if died_of_oom else "killed"
                    finish_cell(index, status, t0)
                    report.update(status=status, ename="DeadKernelError", evalue="the kernel died", failing_cell=index)
                    return
                finish_cell(index, "ok", t0)
                cells[index]["truncated_bytes"] = client.cell_dropped.get(index, 0)
            report["status"] = "ok"
    except Exception as exc:
        if "status" in report:
            return  # the run had an outcome; only the kernel shutdown failed
        # the kernel never started (missing ipykernel, startup timeout): not the notebook's fault
        report.update(status="infrastructure_error", ename=type(exc).__name__, evalue=str(exc)[:2000],
                      phase="kernel", traceback=traceback.format_exc().splitlines()[-50:])
    finally:
        for index, dropped in client.cell_dropped.items():
            cells[index]["truncated_bytes"] = dropped
        report["output_bytes"] = client.total_bytes
        report["truncated"] = bool(client.cell_dropped)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebook", help="the .ipynb to execute (read-only is fine: it is copied to --workdir)")
    parser.add_argument("--workdir", default="/kaggle/working", help="the kernel's working directory")
    parser.add_argument("--timeout", type=float, required=True, help="wall-clock seconds for the whole run")
    parser.add_argument("--startup-timeout", type=float, default=60.0)
    parser.add_argument("--max-cell-output-bytes", type=int, default=2_000_000)
    parser.add_argument("--max-output-bytes", type=int, default=32_000_000)
    parser.add_argument("--kernel", default="python3")
    parser.add_argument("--log", default=None, help="file receiving the kernel's stdout/stderr")
    args = parser.parse_args(argv)

    # the report channel: a private, non-inheritable copy of the stdout we were given
    report_fd = os.dup(1)
    log_path = args.log or os.path.join(os.environ.get("TMPDIR", "/tmp"), "nbatlas-kernel.log")
    try:
        log_fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    except OSError:
        log_fd, log_path = os.open(os.devnull, os.O_WRONLY), None
    sys.stdout.flush()
    sys.stderr.flush()
    os.dup2(log_fd, 1)
    os.dup2(log_fd, 2)

    report: dict[str, Any] = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "started_at": time.time(),
    }
    t0 = time.monotonic()
    try:
        report["packages"] = _package_versions()
        asyncio.run(_run(args, report))
    except BaseException as exc:  # noqa: BLE001 - whatever broke, the host must get a report
        report.setdefault("status", "infrastructure_error")
        report.setdefault("ename", type(exc).__name__)
        report.setdefault("evalue", str(exc)[:2000])
        report.setdefault("traceback", traceback.format_exc().splitlines()[-50:])
    report.setdefault("status", "infrastructure_error")
    report["duration_s"] = round(time.monotonic() - t0, 6)
    report["finished_at"] = time.time()
    report["log_tail"] = _tail(log_path)

    payload = json.dumps(report, ensure_ascii=True, default=_json_default).encode("ascii")
    with os.fdopen(report_fd, "wb") as out:
        out.write(b"\n" + MARKER + b"\n" + payload + b"\n")
        out.flush()
    return 0


def _json_default(value: Any) -> Any:
    if isinstance(value, (set, tuple)):
        return list(value)
    return str(value)


if __name__ == "__main__":
    sys.exit(main())
