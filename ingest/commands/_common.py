"""What every command needs: settings, an engine on a migrated database, friendly errors."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console
from sqlalchemy import Engine

from db.settings import Settings, get_settings

console = Console(stderr=True)


def fail(message: str, code: int = 1) -> "NoReturn":  # noqa: F821
    console.print(f"[bold red]error:[/] {message}")
    raise SystemExit(code)


@contextmanager
def api_errors(url: str) -> Iterator[None]:
    """A failing API client (report, inspect) ends the command with the server's address and the reason."""
    from analysis.client import NbatlasError

    try:
        yield
    except NbatlasError as exc:
        fail(f"the API at {url} refused a query: {exc}")
    except Exception as exc:  # httpx transport errors: the server is not there
        if type(exc).__module__.startswith("httpx"):
            fail(f"cannot reach the API at {url}: {exc}")
        raise


def open_engine(settings: Settings | None = None, *, upgrade_empty: bool = True) -> Engine:
    from db.engine import open_database
    from db.schema import SchemaOutdated

    settings = settings or get_settings()
    try:
        return open_database(settings, upgrade_empty=upgrade_empty)
    except SchemaOutdated as exc:
        fail(str(exc))
    except Exception as exc:  # the database could not be reached or started
        where = settings.database_url or f"embedded server in {settings.pgdata}"
        fail(f"cannot open the database ({where}): {exc}")
    sys.exit(1)


def api_server(url: str | None, timeout: float = 120.0):
    """The API the client commands (report, inspect) talk to: ``url`` when given, else a private
    `nbatlas serve` started for the duration of the block."""
    return _given(url) if url else _private_server(timeout)


@contextmanager
def _given(url: str) -> Iterator[str]:
    yield url


@contextmanager
def _private_server(timeout: float) -> Iterator[str]:
    """`nbatlas serve` on a free local port, on the configured database, for as long as the block runs.
    A subprocess, so the report is a client of the API like any other analysis script."""
    from ingest.serve_process import ServerNotServing, free_port, stop_server, wait_until_serving

    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "ingest.cli", "serve", "--port", str(port), "--log-level", "warning"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        try:
            wait_until_serving(proc, base, timeout)
        except ServerNotServing as exc:
            if proc.poll() is not None:
                err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
                fail(f"the private API server could not start:\n{err.strip()}")
            fail(f"the private API server: {exc}")
        yield base
    finally:
        stop_server(proc)
        if proc.stderr:
            proc.stderr.close()
