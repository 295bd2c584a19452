"""`python -m bench plots`: the figures of the reports, drawn from the run records and the
artifacts they point to (seaborn / matplotlib, Agg backend, PNG + PDF under
`<results>/plots/`). One module per figure kind:

* pareto.py       - mIoU against size, MAdds and measured latency, per model
* sparsity.py     - zero weights per layer, nonzero weights per epoch of gradual pruning
* attention.py    - attention maps of teacher and student at the AT layer sets
* predictions.py  - input, ground truth, baseline and every method on fixed images
* sensitivity.py  - per-layer pruning sensitivity curves (bench/sensitivity.py's CSVs)
"""

from __future__ import annotations


def main(args) -> int:
    """Entry point of the `plots` subcommand (argparse namespace from bench/cli.py)."""
    from bench.plots.command import run_command

    return run_command(args)
