"""Plumbing of the mining layer that the service uses but users do not: corpus rows stacked with extra rows (the
positives a request gives as texts outside the index). Not public API; the layer test lets other negminer packages
import a package's ``_internal`` module and no other private one."""

from negminer.mining._miner import StackedRows

__all__ = ["StackedRows"]
