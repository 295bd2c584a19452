"""Per-layer ranks from one retained-energy threshold.

Every candidate layer keeps the smallest rank whose singular values hold a fraction `e` of
the spectrum's energy (sum of squares); tucker applies `e` to both channel modes. A layer
whose factors at that rank would cost at least its original MAdds stays as it is. `e` is
either given (`energy`) or the largest threshold whose plan meets a MAdds target (`ratio`):
total MAdds only grow with `e`, so the threshold is found by bisection over the finitely
many energies at which some rank changes. One threshold for all layers spends rank where
the spectrum is flat and takes it where energy is concentrated, without any evaluation
pass (AIMET's greedy selection instead scores candidate ratios on validation data).

MAdds follow bench/complexity.py: output elements x in_channels x kernel area per conv.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class Layer:
    """What the plan needs to know about one candidate conv: its scheme, kernel, channel
    counts, input and output sizes on the probe input, and its spectra."""

    name: str
    scheme: str
    c_in: int
    c_out: int
    kernel: tuple[int, int]
    in_hw: tuple[int, int]
    out_hw: tuple[int, int]
    spectra: tuple[torch.Tensor, ...]

    @property
    def madds(self) -> int:
        (kh, kw), (h, w) = self.kernel, self.out_hw
        return self.c_out * self.c_in * kh * kw * h * w

    def factored_madds(self, ranks: tuple[int, ...]) -> int:
        (kh, kw), (h, w), (hi, wi) = self.kernel, self.out_hw, self.in_hw
        i, o = self.c_in, self.c_out
        if self.scheme == "spatial":  # kh x 1 at (h, wi), then 1 x kw at (h, w)
            (r,) = ranks
            return r * i * kh * h * wi + o * r * kw * h * w
        if self.scheme == "channel":
            (r,) = ranks
            return r * i * kh * kw * h * w + o * r * h * w
        r_in, r_out = ranks
        return r_in * i * hi * wi + r_out * r_in * kh * kw * h * w + o * r_out * h * w


def energy_rank(s: torch.Tensor, e: float) -> int:
    """The smallest rank whose leading singular values hold a fraction `e` of the energy."""
    energy = s.double() ** 2
    total = float(energy.sum())
    if total == 0.0:
        return 1
    cum = torch.cumsum(energy, 0) / total
    return max(1, min(int(torch.searchsorted(cum, torch.tensor(e - 1e-12, dtype=cum.dtype)))
                      + 1, len(s)))


def retained(s: torch.Tensor, r: int) -> float:
    energy = s.double() ** 2
    total = float(energy.sum())
    return float(energy[:r].sum()) / total if total else 1.0


@dataclass
class Plan:
    energy: float
    ranks: dict[str, tuple[int, ...]]  # factorised layers only
    madds: int  # the whole model's, under this plan


def plan_for_energy(layers: list[Layer], e: float, other_madds: int) -> Plan:
    """Ranks at threshold `e`; layers that would not get cheaper are left out."""
    ranks, total = {}, other_madds
    for layer in layers:
        r = tuple(energy_rank(s, e) for s in layer.spectra)
        cost = layer.factored_madds(r)
        if cost < layer.madds:
            ranks[layer.name] = r
            total += cost
        else:
            total += layer.madds
    return Plan(e, ranks, total)


def plan_for_madds(layers: list[Layer], target: int, other_madds: int) -> Plan | None:
    """The plan with the largest threshold whose model MAdds are at most `target`; None
    if even rank 1 everywhere does not get there."""
    cuts = sorted({0.0} | {float(c) for layer in layers for s in layer.spectra
                           for c in (torch.cumsum(s.double() ** 2, 0) / max(
                               float((s.double() ** 2).sum()), 1e-300))[:-1]})
    if plan_for_energy(layers, cuts[0], other_madds).madds > target:
        return None
    lo, hi = 0, len(cuts) - 1  # invariant: cuts[lo] meets the target
    if plan_for_energy(layers, cuts[hi], other_madds).madds <= target:
        return plan_for_energy(layers, cuts[hi], other_madds)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if plan_for_energy(layers, cuts[mid], other_madds).madds <= target:
            lo = mid
        else:
            hi = mid
    return plan_for_energy(layers, cuts[lo], other_madds)
