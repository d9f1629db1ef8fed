"""Commands: corpus (filled in by its issue)."""

import typer

app = typer.Typer()
