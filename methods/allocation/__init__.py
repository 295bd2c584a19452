"""One choice per layer under one budget, minimising the summed per-layer cost: the
multiple-choice knapsack behind HAWQ-v3's bit allocation (Yao et al. 2021) and behind
sensitivity-driven per-layer pruning rates (Han et al. 2015 set each layer's threshold from
its sensitivity curve; here the curve picks the rate). The cost model is additive, as both
assume: the model's damage is the sum of what each layer's choice does alone.

Solved exactly by dynamic programming over the budget, with every option's size rounded
up to a grid of budget/`grid_steps` units, so a solution always fits the budget.
Used by mixed-precision quantization (methods/quant/mixed.py: bits per layer, sizes in
bytes) and by `prune_unstructured --set scope=sensitivity` (methods/pruning/allocate.py:
sparsity per layer, sizes in kept weights).
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping

import numpy as np

GRID_STEPS = 4096  # resolution of the dynamic program over the budget


def choose_per_layer(cost: Mapping[str, Mapping[Hashable, float]],
                     size: Mapping[str, Mapping[Hashable, int]], budget: int,
                     grid_steps: int = GRID_STEPS) -> dict[str, Hashable] | None:
    """For every layer, the option (a key of `cost[layer]`) minimising the summed cost with
    the summed `size` of the choices within `budget`; None when no choice fits the grid."""
    names, budget = list(cost), int(budget)
    step = max(1, math.ceil(budget / grid_steps))
    units = budget // step
    inf = float("inf")
    best = np.zeros(units + 1)  # least summed cost using at most u units
    picks: list[tuple[list[Hashable], np.ndarray]] = []
    for n in names:
        options = list(cost[n])
        new = np.full(units + 1, inf)
        pick = np.full(units + 1, -1, dtype=np.int64)
        for k, option in enumerate(options):
            c = math.ceil(size[n][option] / step)
            if c > units:
                continue
            cand = np.full(units + 1, inf)
            cand[c:] = best[: units + 1 - c] + cost[n][option]
            better = cand < new
            new[better], pick[better] = cand[better], k
        best = new
        picks.append((options, pick))
    if not np.isfinite(best[units]):
        return None
    out, u = {}, units
    for n, (options, pick) in zip(reversed(names), reversed(picks)):
        option = options[int(pick[u])]
        out[n] = option
        u -= math.ceil(size[n][option] / step)
    return {n: out[n] for n in names}
