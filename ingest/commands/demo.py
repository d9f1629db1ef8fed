"""Commands: demo (filled in by its issue)."""

import typer

app = typer.Typer()
