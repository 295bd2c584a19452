"""`lowrank`: low-rank factorisation of convolutions, then fine-tuning (family `factorize`).

Every eligible conv (plain Conv2d, ungrouped, zero padding; stem and classifier kept whole
by default, as in pruning) is replaced by a chain of smaller convolutions
(methods/factorize/decompose.py): a k x k kernel by a k x 1 and a 1 x k conv (`kxk=spatial`,
Jaderberg et al. 2014 scheme 2, AIMET's spatial SVD; or `channel` SVD, or `tucker`-2), a
1 x 1 (or k x 1) kernel by two thinner convs (channel SVD). The ranks come from one
retained-energy threshold (methods/factorize/ranks.py): given as `energy`, or the largest
one that removes the fraction `ratio` of the whole model's MAdds (0.5: 2x fewer). A layer
whose factors would not be cheaper stays whole. The model is then fine-tuned with the
shared loop for the budget's fine-tuning epochs.

The artifact is a plain dense safetensors file of the factor weights; its header lists each
factorised layer's scheme and ranks, and `rebuild` replaces those layers of a freshly built
zoo model by empty factors of the recorded shapes before the weights load. MAdds and
parameters fall for real; whether latency does depends on the kernels (PyTorch's CPU
convolutions are not always faster for two thin convs than for one wide one).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from bench.complexity import count_madds
from bench.config import ConfigError, Settings, setting
from bench.facts import Fact
from bench.method import Method, NotApplicable, register_method
from methods.factorize.decompose import (
    SCHEMES,
    FactorizedConv,
    eligible,
    empty_factorized,
    factorize,
    rank_limits,
    scheme_for,
    spectra,
    stored_ranks,
)
from methods.factorize.ranks import Layer, plan_for_energy, plan_for_madds, retained
from methods.pruning.masks import PROBE_SHAPE, prunable_layers

DEFAULT_RATIO = 0.5
CHECK_SIZES = ((64, 64), (61, 93))  # (H, W) the factorised model must run at


@dataclass
class LowRankFactors(Fact):
    """The threshold the ranks came from, the MAdds asked for and reached, and each layer's
    scheme, ranks (of the full ranks) and retained energy; the layers left whole."""

    key: ClassVar[str] = "lowrank"
    energy: float
    madds_before: int
    madds_target: int | None
    madds_after: int
    layers: dict[str, dict[str, Any]]
    kept_whole: list[str]


def _probe(model: nn.Module, names: list[str], input_shape) -> dict[str, tuple]:
    """name -> (input (H, W), output (H, W)) of each named conv on a zero input."""
    sizes: dict[str, tuple] = {}

    def record(name):
        def hook(module, inputs, output) -> None:  # None: the output stays as it is
            sizes.setdefault(name, (tuple(inputs[0].shape[-2:]), tuple(output.shape[-2:])))
        return hook

    hooks = [model.get_submodule(n).register_forward_hook(record(n)) for n in names]
    was = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(torch.zeros(*input_shape, device=next(model.parameters()).device))
    finally:
        for h in hooks:
            h.remove()
        model.train(was)
    return sizes


def _runs(model: nn.Module, sizes) -> Exception | None:
    try:
        with torch.no_grad():
            for h, w in sizes:
                model(torch.zeros(1, 3, h, w, device=next(model.parameters()).device))
    except Exception as e:  # noqa: BLE001 - any failure means "does not run"
        return e
    return None


@register_method("lowrank", family="factorize")
class LowRankFactorization(Method):
    version = 1
    # MAdds removed: 1.5x, 2x and 3x fewer
    sweep = [{"ratio": 0.33}, {"ratio": 0.5}, {"ratio": 0.67}]  # explicit: labelled

    @dataclass
    class Config(Settings):
        # fraction of the model's MAdds removed (0.5: 2x fewer); null with `energy`, and
        # 0.5 when both are null
        ratio: float | None = setting(None, gt=0.0, lt=1.0)
        # retained-energy threshold of every layer's spectrum, instead of a MAdds target
        energy: float | None = setting(None, gt=0.0, le=1.0)
        kxk: str = setting("spatial", choices=SCHEMES)  # scheme of k x k kernels
        exclude_first: bool = True  # keep the stem convolution whole
        exclude_last: bool = True  # keep the classifier layer(s) whole
        exclude: list[str] = setting([])  # fnmatch patterns of layer names

        def __post_init__(self) -> None:
            super().__post_init__()
            if self.ratio is not None and self.energy is not None:
                raise ConfigError("energy", self.energy,
                                  "null when ratio is set (one target: ratio or energy)")

        @property
        def target_ratio(self) -> float | None:
            """The MAdds fraction to remove: `ratio`, 0.5 when neither target is given,
            None when `energy` decides the ranks."""
            if self.energy is not None:
                return None
            return self.ratio if self.ratio is not None else DEFAULT_RATIO

    def __init__(self, config: Config | None = None):
        super().__init__(config)
        self.factored: dict[str, dict[str, Any]] = {}

    # -- choosing ranks -------------------------------------------------------------------
    def candidates(self, model: nn.Module, input_shape=PROBE_SHAPE) -> list[Layer]:
        c = self.config
        names = prunable_layers(model, exclude_first=c.exclude_first,
                                exclude_last=c.exclude_last, exclude=c.exclude,
                                input_shape=input_shape)
        names = [n for n in names if eligible(model.get_submodule(n)) is None]
        sizes = _probe(model, names, input_shape)
        out = []
        for n in names:
            if n not in sizes:
                continue  # never runs on this input
            conv = model.get_submodule(n)
            scheme = scheme_for(conv, c.kxk)
            out.append(Layer(n, scheme, conv.in_channels, conv.out_channels,
                             tuple(conv.kernel_size), *sizes[n], spectra(conv, scheme)))
        return out

    def compress(self, ctx, model: nn.Module) -> nn.Module:
        c = self.config
        shape = tuple(ctx.input_shape)
        layers = self.candidates(model, shape)
        before = count_madds(model, shape).madds
        other = before - sum(layer.madds for layer in layers)
        if c.energy is not None:
            plan, target = plan_for_energy(layers, c.energy, other), None
        else:
            target = int((1.0 - c.target_ratio) * before)
            plan = plan_for_madds(layers, target, other)
            if plan is None:
                floor = plan_for_energy(layers, 0.0, other).madds
                raise NotApplicable(
                    f"lowrank: ratio={c.target_ratio} asks for {target} MAdds, but rank 1 in every "
                    f"factorisable layer of {ctx.spec.model} still leaves {floor} (at most "
                    f"{1 - floor / before:.2f} of {before} can go)")
        if not plan.ranks:
            raise NotApplicable(f"lowrank: at energy {plan.energy:.4g} no layer of "
                                f"{ctx.spec.model} gets cheaper when factorised")
        by_name = {layer.name: layer for layer in layers}
        for name, ranks in plan.ranks.items():
            conv, layer = model.get_submodule(name), by_name[name]
            model.set_submodule(name, factorize(conv, layer.scheme, ranks))
            self.factored[name] = {
                "scheme": layer.scheme, "ranks": list(ranks),
                "full_ranks": list(rank_limits(conv, layer.scheme)),
                "energy": [round(retained(s, r), 5) for s, r in zip(layer.spectra, ranks)]}
        err = _runs(model.eval(), CHECK_SIZES + (shape[-2:],))
        if err is not None:
            raise RuntimeError(f"lowrank: {ctx.spec.model} no longer runs after "
                               f"factorisation ({type(err).__name__}: {err})")
        after = count_madds(model, shape).madds
        ctx.report(LowRankFactors(
            energy=plan.energy, madds_before=before, madds_target=target, madds_after=after,
            layers=self.factored,
            kept_whole=[n for n in by_name if n not in self.factored],
        ))
        return model

    def finetune_epochs(self, ctx) -> int:
        return ctx.budget.finetune_epochs

    # -- artifact -------------------------------------------------------------------------
    def artifact_meta(self, model: nn.Module) -> dict[str, Any]:
        layers = {n: {"scheme": m.scheme, "ranks": list(m.ranks)}
                  for n, m in model.named_modules() if isinstance(m, FactorizedConv)}
        return {"layers": layers, "params": sum(p.numel() for p in model.parameters())}

    def rebuild(self, model: nn.Module, meta: dict[str, Any]) -> nn.Module:
        for name, rec in meta.get("layers", {}).items():
            try:
                conv = model.get_submodule(name)
            except AttributeError:
                raise ValueError(f"factorised layer {name!r} does not exist in the built "
                                 "model") from None
            if rec.get("scheme") not in SCHEMES or (why := eligible(conv)) is not None:
                raise ValueError(f"layer {name!r} cannot hold a {rec.get('scheme')!r} "
                                 f"factorisation ({why or 'unknown scheme'})")
            model.set_submodule(name, empty_factorized(conv, rec["scheme"],
                                                       tuple(rec["ranks"])))
        return model

    def check(self, model: nn.Module, meta: dict[str, Any]) -> list[str]:
        problems = []
        for name, rec in meta.get("layers", {}).items():
            try:
                m = model.get_submodule(name)
            except AttributeError:
                problems.append(f"factorised layer {name} is missing")
                continue
            if not isinstance(m, FactorizedConv) or m.scheme != rec["scheme"]:
                problems.append(f"layer {name} is not a {rec['scheme']} factorisation")
            elif list(stored_ranks(m)) != list(rec["ranks"]):
                problems.append(f"layer {name}: ranks {list(stored_ranks(m))} stored, "
                                f"{rec['ranks']} declared")
        params = sum(p.numel() for p in model.parameters())
        if "params" in meta and params != meta["params"]:
            problems.append(f"{params} parameters, artifact declares {meta['params']}")
        err = _runs(model.eval(), CHECK_SIZES)
        if err is not None:
            problems.append(f"factorised model does not run: {type(err).__name__}: {err}")
        return problems

    def describe(self) -> str:
        c = self.config
        target = f"energy={c.energy}" if c.energy is not None else f"ratio={c.target_ratio}"
        return target + (f",{c.kxk}" if c.kxk != "spatial" else "")

