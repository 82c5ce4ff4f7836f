"""Subcommands. Each module exposes ``register(subparsers, parents)``, which adds its parser(s) and sets
``handler=<function(args, ctx) -> int>``. A new operator command (status, flush, report, export) is one more
module listed in :data:`COMMAND_MODULES`; nothing else changes."""

from __future__ import annotations

from fieldlabel_cli.commands import cost, taxonomists, upload

COMMAND_MODULES = (upload, taxonomists, cost)
