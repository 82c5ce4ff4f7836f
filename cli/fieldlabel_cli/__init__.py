"""``fieldlabel``: the command-line tool shared by field scientists (upload) and operators (taxonomists, ...).

Every command is a module in :mod:`fieldlabel_cli.commands` exposing ``register(subparsers, common)``; the parser
and the error handling live in :mod:`fieldlabel_cli.main`.
"""

__version__ = "0.1.0"
