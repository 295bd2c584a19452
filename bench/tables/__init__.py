"""`python -m bench tables`: regenerate the tables of the four reference reports from run
records, running whatever is missing.

Each report is one module declaring its tables as data (bench/tables/dlv3p_compression.py,
realtime_thesis.py, edge_report.py, efficient_proposal.py); bench/tables/engine.py turns a
declaration into run specs, runs and `<results>/tables/<ID>.md` + `.tex`.
"""

from __future__ import annotations


def main(args) -> int:
    """Entry point of the `tables` subcommand (argparse namespace from bench/cli.py)."""
    from bench.tables.command import run_command

    return run_command(args)
