"""methods/allocation: the per-layer multiple-choice knapsack that mixed precision and
sensitivity-allocated pruning share."""

from __future__ import annotations

import itertools

import pytest

from methods.allocation import choose_per_layer


def _brute_force(cost, size, budget):
    names = list(cost)
    best = None
    for combo in itertools.product(*(list(cost[n]) for n in names)):
        if sum(size[n][o] for n, o in zip(names, combo)) <= budget:
            total = sum(cost[n][o] for n, o in zip(names, combo))
            if best is None or total < best[0]:
                best = (total, dict(zip(names, combo)))
    return best


@pytest.mark.parametrize("budget", [30, 55, 80, 120, 400])
def test_the_choice_is_the_cheapest_that_fits(budget):
    cost = {"big": {0: 0.0, 1: 0.1, 2: 0.3}, "small": {0: 0.0, 1: 2.0, 2: 5.0},
            "mid": {0: 0.0, 1: 0.5, 2: 1.5}}
    size = {"big": {0: 200, 1: 60, 2: 10}, "small": {0: 20, 1: 10, 2: 5},
            "mid": {0: 100, 1: 40, 2: 15}}
    chosen = choose_per_layer(cost, size, budget)
    best = _brute_force(cost, size, budget)
    if best is None:
        assert chosen is None
        return
    assert sum(size[n][o] for n, o in chosen.items()) <= budget
    assert sum(cost[n][o] for n, o in chosen.items()) == pytest.approx(best[0])


def test_nothing_fits_is_none():
    assert choose_per_layer({"a": {0: 0.0}}, {"a": {0: 10}}, 9) is None
