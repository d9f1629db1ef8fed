"""What every command needs: settings, an engine on a migrated database, friendly errors."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from sqlalchemy import Engine

from db.settings import Settings, get_settings

console = Console(stderr=True)


def fail(message: str, code: int = 1) -> "NoReturn":  # noqa: F821
    # escaped: messages carry file names, reasons and hints like pip install 'nbatlas[ml]' that
    # rich would otherwise read as markup tags and drop
    console.print(f"[bold red]error:[/] {escape(message)}", soft_wrap=True)
    raise SystemExit(code)


def reason(exc: OSError) -> str:
    """An OSError in words ("No such file or directory"), without the errno and the file name."""
    if exc.errno:  # pyarrow puts its own sentence in strerror; the errno says it plainly
        return os.strerror(exc.errno)
    return exc.strerror or str(exc)


def check_output_path(path: Path) -> None:
    """Fail before any work when ``path`` cannot be written: its folder is missing, or it is a folder."""
    if str(path) == "-":
        return
    parent = path.parent if str(path.parent) else Path(".")
    if path.is_dir():
        fail(f"cannot write {path}: it is a folder")
    if not parent.is_dir():
        fail(f"cannot write {path}: " + (f"{parent} is not a folder" if parent.exists() else f"the folder {parent} does not exist"))


_PASSWORD_KEYWORD = re.compile(r"(?P<key>\bpassword\s*=\s*)('[^']*'|\S+)", re.IGNORECASE)
_PASSWORD_IN_URL = re.compile(r"(?P<head>[a-z][a-z0-9+.\-]*://[^:/@\s]*:)(?P<password>[^@\s]*)@", re.IGNORECASE)


def hide_password(url: str) -> str:
    """A database URL fit to print: the password (if any) replaced by ***."""
    from sqlalchemy.engine import make_url

    try:
        parsed = make_url(url)
    except Exception:  # not a URL sqlalchemy can read: mask by pattern
        return _PASSWORD_IN_URL.sub(lambda m: m["head"] + ("***" if m["password"] else "") + "@", url)
    if not parsed.password:
        return url
    return parsed.render_as_string(hide_password=True)


def scrub_password(text: str) -> str:
    """``text`` (an error message) with every password in it masked: in URLs (user:password@) and
    in libpq key=value strings (password=...)."""
    text = _PASSWORD_IN_URL.sub(lambda m: m["head"] + ("***" if m["password"] else "") + "@", text)
    return _PASSWORD_KEYWORD.sub(r"\g<key>***", text)


_EXPECTED = {
    "int_parsing": "a whole number",
    "int_type": "a whole number",
    "int_from_float": "a whole number",
    "float_parsing": "a number",
    "float_type": "a number",
    "bool_parsing": "true or false (also 1/0, yes/no, on/off)",
    "bool_type": "true or false (also 1/0, yes/no, on/off)",
}


def settings_error_lines(exc: Exception) -> list[str] | None:
    """One line per bad NBATLAS_* environment variable of a settings ValidationError, or None when
    ``exc`` is not about a settings class (pydantic-settings BaseSettings) at all."""
    from pydantic import ValidationError
    from pydantic_settings import BaseSettings

    if not isinstance(exc, ValidationError):
        return None
    classes, todo = {}, [BaseSettings]
    while todo:
        for sub in todo.pop().__subclasses__():
            classes.setdefault(sub.__name__, sub)
            todo.append(sub)
    cls = classes.get(exc.title)
    if cls is None:
        return None
    prefix = cls.model_config.get("env_prefix", "") or ""
    lines = []
    for err in exc.errors():
        field = str(err["loc"][0]) if err["loc"] else ""
        variable = (prefix + field).upper()
        expected = _EXPECTED.get(err["type"]) or err["msg"].removeprefix("Input should be ").removeprefix("Value error, ")
        lines.append(f"{variable}={err.get('input')!r} is not valid: it should be {expected}")
    return lines


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
        fail(database_error(settings, exc))
    sys.exit(1)


def database_error(settings: Settings, exc: BaseException) -> str:
    """Why the database could not be opened, naming it without its password."""
    where = hide_password(settings.database_url) if settings.database_url else f"embedded server in {settings.pgdata}"
    return f"cannot open the database ({where}): {scrub_password(str(exc))}"


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
