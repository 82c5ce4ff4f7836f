"""Subcommands. Each module exposes ``register(subparsers, parents)``, which adds its parser(s) and sets
``handler=<function(args, ctx) -> int>``. A new command is one more module listed in
:data:`COMMAND_MODULES`; nothing else changes."""

from __future__ import annotations

from fieldlabel_cli.commands import cost, evaluate, export, flush, report, resume, status, taxonomists, upload

COMMAND_MODULES = (upload, taxonomists, status, flush, resume, report, export, cost, evaluate)
