"""Every declared table, by id, in report order."""

from __future__ import annotations

from bench.tables import dlv3p_compression, edge_report, efficient_proposal, realtime_thesis
from bench.tables.schema import Table

REPORTS = (dlv3p_compression, realtime_thesis, edge_report, efficient_proposal)


def all_tables() -> dict[str, Table]:
    out: dict[str, Table] = {}
    for mod in REPORTS:
        for t in mod.TABLES:
            if t.id in out:
                raise ValueError(f"table id {t.id!r} is declared twice")
            out[t.id] = t
    return out
