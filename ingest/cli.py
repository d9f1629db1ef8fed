"""The ``nbatlas`` command. This is the composition root: it only parses arguments and calls jobs.

Each group of commands lives in ``ingest/commands/<topic>.py`` with its own Typer app; they are
merged here so every command is a top-level ``nbatlas <command>``.
"""

from __future__ import annotations

import typer
from rich.markup import escape

from ingest.commands import COMMAND_MODULES

app = typer.Typer(
    name="nbatlas",
    help=(
        "nbatlas: a queryable corpus of Jupyter notebooks (text, code and the plots they drew) "
        "in PostgreSQL + pgvector.\n\n"
        "With NBATLAS_DATABASE_URL unset, an embedded PostgreSQL is started in $NBATLAS_HOME/pg "
        "and reused by later commands; `nbatlas db stop` stops it."
    ),
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
    add_completion=False,
    # click's plain help: rich's tables cut long option names and words at 80 columns and read
    # brackets in help texts ("[default: ...]") as markup
    rich_markup_mode=None,
)


def _print_version(value: bool) -> None:
    if value:
        from ingest.commands.version import version_text

        print(version_text())
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", is_eager=True, callback=_print_version, help="Print the version and exit."
    ),
) -> None:
    pass


for module in COMMAND_MODULES:
    app.registered_commands.extend(module.app.registered_commands)
    app.registered_groups.extend(module.app.registered_groups)


def main() -> None:
    try:
        app()
    except Exception as exc:
        # A bad NBATLAS_* variable surfaces wherever a command first builds its settings: one line
        # per variable instead of pydantic's traceback, for every command
        from ingest.commands._common import console, settings_error_lines

        lines = settings_error_lines(exc)
        if lines is None:
            raise
        for line in lines:
            console.print(f"[bold red]error:[/] {escape(line)}", soft_wrap=True)
        raise SystemExit(1) from None


if __name__ == "__main__":
    main()
