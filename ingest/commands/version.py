"""``nbatlas version`` (and ``nbatlas --version``): which nbatlas, Python and schema this is."""

from __future__ import annotations

import typer

app = typer.Typer()


def version_text() -> str:
    import platform
    from importlib.metadata import PackageNotFoundError, version

    try:
        ours = version("nbatlas")
    except PackageNotFoundError:  # running from a source tree that was never installed
        ours = "unknown (not installed)"
    from db.schema import head_revision

    return f"nbatlas {ours} (schema {head_revision()}, Python {platform.python_version()})"


@app.command("version")
def version_command() -> None:
    """Print the nbatlas version, the schema revision it expects and the Python it runs on."""
    print(version_text())
