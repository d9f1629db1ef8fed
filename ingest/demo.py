"""The demo corpus job: build the project's own sample notebooks and execute them for real.

The notebooks are defined in :mod:`ingest.demo_notebooks`. They are executed here with nbclient
on an ipykernel running *this* Python (the venv nbatlas is installed in), so their outputs,
plots and the one error are what Jupyter really produces, not hand-written JSON.

Executing them outside the Docker sandbox is deliberate and safe: they are nbatlas's own,
trusted code, shipped in this package. Notebooks from the corpus are never run this way.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import nbformat
from nbformat import NotebookNode
from rich.console import Console

from ingest.demo_notebooks import DEMO_NOTEBOOKS, DemoNotebook

# A fixed date keeps the SVG figure's metadata stable between runs (matplotlib honours it).
_SOURCE_DATE_EPOCH = "1704067200"  # 2024-01-01
_KERNELSPEC = {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}


class DemoError(RuntimeError):
    """A demo notebook did not execute as designed (names the notebook and the cell)."""


@dataclass(frozen=True)
class DemoCorpus:
    directory: Path
    paths: list[Path]
    generated: bool  # False when the notebooks on disk were reused


def demo_paths(directory: Path, notebooks: list[DemoNotebook] = DEMO_NOTEBOOKS) -> list[Path]:
    return [Path(directory) / f"{spec.name}.ipynb" for spec in notebooks]


def build_notebook(spec: DemoNotebook) -> NotebookNode:
    """The notebook before execution (nbformat 4)."""
    make = {"markdown": nbformat.v4.new_markdown_cell, "code": nbformat.v4.new_code_cell}
    cells = [make[cell_type](source) for cell_type, source in spec.cells]
    nb = nbformat.v4.new_notebook(cells=cells)
    nb.metadata["kernelspec"] = dict(_KERNELSPEC)
    nb.metadata["nbatlas"] = {"demo": True, "title": spec.title}
    for index, cell in enumerate(nb.cells):
        # stable ids so regenerating gives the same notebook apart from what execution varies
        cell["id"] = f"{spec.name[:2]}-{index:02d}"
    return nb


def _kernel_env() -> dict[str, str]:
    env = dict(os.environ)
    # ipykernel only picks the inline backend when MPLBACKEND is unset; a user's MPLBACKEND=Agg
    # would otherwise silently produce notebooks without a single plot. The inline backend
    # renders with Agg, so no display is needed.
    env["MPLBACKEND"] = "module://matplotlib_inline.backend_inline"
    env["SOURCE_DATE_EPOCH"] = _SOURCE_DATE_EPOCH
    env["PYDEVD_DISABLE_FILE_VALIDATION"] = "1"  # silence the debugger's frozen-modules warning
    env.pop("PYTHONSTARTUP", None)
    return env


def _private_kernel_dir() -> tempfile.TemporaryDirectory:
    """A kernelspec directory whose ``python3`` kernel is exactly ``sys.executable``.

    ``kernel_name='python3'`` alone resolves through the Jupyter paths, where a user-level spec
    (``~/.local/share/jupyter/kernels/python3``) may point at another Python without numpy or
    matplotlib. A private spec written by ipykernel itself cannot.
    """
    from ipykernel.kernelspec import write_kernel_spec

    tmp = tempfile.TemporaryDirectory(prefix="nbatlas-kernels-")
    write_kernel_spec(Path(tmp.name) / "python3")
    return tmp


def _warm_matplotlib() -> None:
    # On a fresh machine matplotlib builds its font cache on first import and says so on stderr;
    # inside a kernel that message would become an output of the first plotting cell.
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.font_manager  # noqa: F401


async def _execute(
    nb: NotebookNode,
    *,
    name: str,
    workdir: Path,
    kernel_dir: Path,
    timeout: int,
    on_cell: Callable[[], None] | None,
) -> NotebookNode:
    from jupyter_client.kernelspec import KernelSpecManager
    from jupyter_client.manager import AsyncKernelManager
    from nbclient import NotebookClient

    km = AsyncKernelManager(
        kernel_name="python3",
        kernel_spec_manager=KernelSpecManager(kernel_dirs=[str(kernel_dir)]),
        # unix sockets in our private directory: nothing listens on TCP, even on loopback
        transport="ipc",
        ip=str(kernel_dir / f"{name[:2]}-ipc"),
    )
    client = NotebookClient(
        nb,
        km=km,
        timeout=timeout,
        allow_errors=True,  # keep the error output of the failing notebook, as Jupyter does
        record_timing=False,  # execution timestamps would make every run a different file
        resources={"metadata": {"path": str(workdir)}},
        on_cell_executed=(lambda **_: on_cell()) if on_cell else None,
    )
    try:
        await client.async_execute(env=_kernel_env())
    except Exception as exc:  # kernel failed to start or died: name the notebook
        raise DemoError(f"{name}.ipynb: could not execute: {exc}") from exc
    return nb


def _check(spec: DemoNotebook, nb: NotebookNode) -> None:
    """Fail loudly when the environment broke a notebook (e.g. a missing package)."""
    errors = [
        (index, output)
        for index, cell in enumerate(nb.cells)
        if cell.cell_type == "code"
        for output in cell.get("outputs", [])
        if output.output_type == "error"
    ]
    last = len(nb.cells) - 1
    if spec.ends_in_error:
        if not errors or errors[-1][0] != last:
            raise DemoError(f"{spec.name}.ipynb: should end in an error, but its last cell ran cleanly")
        errors = [e for e in errors if e[0] != last]
    if errors:
        index, output = errors[0]
        raise DemoError(f"{spec.name}.ipynb: cell {index} failed: {output.ename}: {output.evalue}")


def _write(nb: NotebookNode, path: Path, version: int) -> None:
    if version != nb.nbformat:
        nb = nbformat.convert(nb, version)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        nbformat.write(nb, fh, version=nbformat.NO_CONVERT)
    os.replace(tmp, path)  # a half-written notebook never looks like a finished one


def generate_demo_corpus(
    directory: Path,
    *,
    regenerate: bool = False,
    progress: bool = True,
    timeout: int = 300,
    concurrency: int = 2,
    console: Console | None = None,
    notebooks: list[DemoNotebook] = DEMO_NOTEBOOKS,
) -> DemoCorpus:
    """Write the demo notebooks into ``directory``, executing them; reuse them if all exist.

    Notebooks are executed ``concurrency`` at a time (each in its own kernel) and written
    atomically, so an interrupted run leaves only whole notebooks behind.
    """
    directory = Path(directory)
    paths = demo_paths(directory, notebooks)
    if not regenerate and all(p.is_file() for p in paths):
        return DemoCorpus(directory, paths, generated=False)
    directory.mkdir(parents=True, exist_ok=True)
    _warm_matplotlib()

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    total_cells = sum(1 for spec in notebooks for cell_type, _ in spec.cells if cell_type == "code")
    bar = Progress(
        TextColumn("[bold]executing demo notebooks"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("cells"),
        TimeElapsedColumn(),
        console=console or Console(stderr=True),
        disable=not progress,
        transient=False,
    )

    async def run_all(task_id) -> None:
        gate = asyncio.Semaphore(max(1, concurrency))

        async def one(spec: DemoNotebook, path: Path) -> None:
            async with gate:
                nb = build_notebook(spec)
                await _execute(
                    nb,
                    name=spec.name,
                    workdir=directory,
                    kernel_dir=Path(kernel_tmp.name),
                    timeout=timeout,
                    on_cell=lambda: bar.advance(task_id),
                )
                _check(spec, nb)
                _write(nb, path, spec.nbformat)

        await asyncio.gather(*(one(spec, path) for spec, path in zip(notebooks, paths)))

    kernel_tmp = _private_kernel_dir()
    try:
        with bar:
            task_id = bar.add_task("execute", total=total_cells)
            asyncio.run(run_all(task_id))
    finally:
        kernel_tmp.cleanup()
    return DemoCorpus(directory, paths, generated=True)
