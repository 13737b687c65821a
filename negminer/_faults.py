"""Fault injection for the durability tests: stop the process with SIGKILL at a named point.

``NEGMINER_FAULT_POINT=<point>`` or ``<point>@<tag>`` (a test hook, not a setting: nothing else reads it, and
it is unset in every normal run) makes :func:`fault_point` kill the process the first time the code passes
``<point>`` (with that tag: the operation type, ``build``, ``documents`` or ``refresh``). A test can then crash a
server exactly between two steps (say, after an index version is published and before its operation record says
so) instead of polling for a moment that a loaded machine may skip. The named points:

- ``index.accepted``: the operation record is written, the work has not started;
- ``index.encoded``: the vectors are encoded, nothing is saved;
- ``index.published``: ``CURRENT`` points at the new version, the operation record still says ``running``;
- ``index.recorded``: the operation record says ``succeeded``.
"""

from __future__ import annotations

import os
import signal

__all__ = ["FAULT_POINTS", "fault_point"]

FAULT_POINTS = ("index.accepted", "index.encoded", "index.published", "index.recorded")
_ENV = "NEGMINER_FAULT_POINT"


def fault_point(name: str, tag: str | None = None) -> None:
    """SIGKILL this process if ``NEGMINER_FAULT_POINT`` names ``name`` (or ``name@tag``); nothing otherwise."""
    if name not in FAULT_POINTS:
        raise ValueError(f"unknown fault point {name!r}")
    wanted = os.environ.get(_ENV)
    if wanted and wanted in (name, f"{name}@{tag}"):
        os.kill(os.getpid(), signal.SIGKILL)
