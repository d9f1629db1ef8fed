"""Command groups of the ``nbatlas`` CLI. Add a module here to add commands."""

from importlib import import_module

_NAMES = ["database", "corpus", "serve", "demo", "version", "mine", "understand", "embed", "reproduce", "study", "report", "inspect"]

COMMAND_MODULES = [import_module(f"ingest.commands.{name}") for name in _NAMES]
