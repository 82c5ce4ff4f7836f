"""Moved to :mod:`localrun.harness` (the offline demo and these tests share it); kept so old imports still work."""

from localrun.harness import *  # noqa: F403
