"""`prune_unstructured`: magnitude pruning of individual weights (Han et al. 2015), one-shot
or on the gradual AGP schedule (Zhu & Gupta 2017), with the weights stored sparsely.

What it does to a trained model:

* picks the prunable weights: every conv / transposed conv / linear weight, minus the stem
  and the classifier if `exclude_first` / `exclude_last` (default: both kept dense, as in
  Gale et al. 2019) and minus the `exclude` name patterns; biases, BatchNorm and PReLU
  parameters are never pruned;
* zeroes the smallest-magnitude `round(sparsity * n)` of them, within each layer
  (`scope=layer`, the default: every layer keeps the same fraction, like Han et al.'s
  per-layer thresholds) or ranked over all prunable layers together (`scope=global`,
  which follows the layers' weight scales: on ENet at 90 % it zeroes whole 3x3 layers,
  reported as `dead_layers` in the run's extras), or each layer at its own rate chosen from
  its measured sensitivity so that the rates together meet `sparsity` (`scope=sensitivity`,
  methods/pruning/allocate.py; the rates and the table are in the record): at once before
  fine-tuning
  (`schedule=oneshot`), or rising from `initial_sparsity` to `sparsity` during fine-tuning
  as s_t = s_f + (s_i - s_f)(1 - (t - t0)/(t_end - t0))^3 every `frequency` steps
  (`schedule=gradual`; by default over the middle half of fine-tuning);
* re-applies the masks after every optimizer step, so pruned weights stay zero through
  fine-tuning, and bakes them in `finalize`;
* stores every tensor in the smallest of dense, bitmask and relative-index form
  (methods/codecs/sparse.py), which is what `size_bytes` measures.

With `pattern=N:M` (e.g. 2:4) the mask is semi-structured instead: in every group of M
consecutive weights along the input channels the N largest magnitudes stay (Mishra et al.
2021, NVIDIA's ASP layout), one-shot, per layer; layers whose input channels are not a
multiple of M stay dense and are listed in the record. Its bytes are the same sparse
encodings (for 2:4 a bitmask costs 1 bit a weight, exactly what the N:M index metadata
costs: 2 bits for each of the 2 kept weights of 4).

Latency stays that of the dense model: PyTorch runs the zeros through dense kernels, and
the leaderboard says so (speedup ~1). The saving that a sparse kernel could realise is
`effective_madds`. That holds for N:M too: only GPUs with sparse tensor cores (Ampere and
later) run 2:4 faster; CPUs get no speed from it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, ClassVar

from torch import nn

from bench.config import ConfigError, Settings, setting
from bench.facts import Fact, UnstructuredSparsity
from bench.method import Method, register_method
from methods.codecs.sparse import FORMATS, sparsify_state
from methods.pruning.masks import (
    PROBE_SHAPE,
    SCOPES,
    agp_sparsity,
    apply_masks,
    input_axis,
    layer_zero_counts,
    magnitude_masks,
    nm_group_counts,
    nm_mask,
    prunable_layers,
)

SCHEDULES = ("oneshot", "gradual")
SCOPE_CHOICES = (*SCOPES, "sensitivity")
PATTERN = re.compile(r"^([1-9][0-9]*):([1-9][0-9]*)$")
PATTERN_WORDS = "null (unstructured) or N:M with 0 < N < M <= 64, e.g. 2:4"


def parse_pattern(pattern: str | None) -> tuple[int, int] | None:
    """(N, M) of an N:M pattern string, None for null; ValueError if malformed."""
    if pattern is None:
        return None
    match = PATTERN.match(pattern)
    if not match or not 0 < int(match[1]) < int(match[2]) <= 64:
        raise ValueError(pattern)
    return int(match[1]), int(match[2])


@dataclass
class SemiStructured(Fact):
    """N:M pruning: the pattern, and the layers left dense because their input channels
    are not a multiple of M."""

    key: ClassVar[str] = "prune_unstructured"
    pattern: str
    dense_layers_not_divisible: list[str]


@dataclass
class SensitivityAllocation(Fact):
    """scope=sensitivity: the rate each layer was given, and the measured table (layer ->
    rate -> relative squared logit error with that layer alone pruned) it was chosen from."""

    key: ClassVar[str] = "prune_unstructured"
    allocated_sparsity: dict[str, float]
    sensitivity: dict[str, dict[str, float]]
    sensitivity_images: int


@register_method("prune_unstructured", family="prune")
class UnstructuredPruning(Method):
    version = 1
    sweep = [{"sparsity": 0.5}, {"sparsity": 0.75}, {"sparsity": 0.9},
             {"sparsity": 0.9, "scope": "sensitivity"}, {"pattern": "2:4"}]

    @dataclass
    class Config(Settings):
        sparsity: float = setting(0.5, ge=0.0, lt=1.0)  # fraction of prunable weights zeroed
        # layer | global: rank magnitudes within each layer or over all; sensitivity: each
        # layer's rate chosen from its measured sensitivity (methods/pruning/allocate.py)
        scope: str = setting("layer", choices=SCOPE_CHOICES)
        schedule: str = setting("oneshot", choices=SCHEDULES)  # oneshot | gradual (AGP)
        initial_sparsity: float = setting(0.0, ge=0.0)  # gradual: sparsity at begin_step
        # gradual: first pruning step (None: 1/4 into fine-tuning)
        begin_step: int | None = setting(None, ge=0)
        # gradual: step the final sparsity is reached (None: 3/4)
        end_step: int | None = setting(None, ge=0)
        frequency: int = setting(100, ge=1)  # gradual: steps between pruning events
        exclude_first: bool = True  # keep the stem convolution dense
        exclude_last: bool = True  # keep the classifier layer(s) dense
        exclude: list[str] = setting([])  # fnmatch patterns of layer names
        # auto | bitmask | relidx (auto: smallest per tensor)
        sparse_format: str = setting("auto", choices=FORMATS)
        # N:M semi-structured (e.g. "2:4": the 2 largest of every 4 consecutive weights
        # along the input channels); null: unstructured
        pattern: str | None = setting(None, new=True)

        def __post_init__(self) -> None:
            super().__post_init__()
            try:
                nm = parse_pattern(self.pattern)
            except ValueError:
                raise ConfigError("pattern", self.pattern, PATTERN_WORDS) from None
            if nm is not None:
                implied = 1 - nm[0] / nm[1]
                if self.schedule != "oneshot" or self.scope != "layer":
                    raise ConfigError("pattern", self.pattern, "null with schedule=gradual "
                                      "or a scope other than layer (an N:M mask is "
                                      "one-shot, per layer)")
                default = type(self).__dataclass_fields__["sparsity"].default
                if self.sparsity not in (default, implied):
                    raise ConfigError("sparsity", self.sparsity, f"{implied:g} (implied by "
                                      f"pattern {self.pattern}) or left at its default")
            if self.initial_sparsity > self.sparsity:
                raise ConfigError("initial_sparsity", self.initial_sparsity,
                                  f"a number in [0, sparsity={self.sparsity}]")
            if (self.begin_step is not None and self.end_step is not None
                    and self.end_step < self.begin_step):
                raise ConfigError("end_step", self.end_step,
                                  f"null or an integer >= begin_step={self.begin_step}")

    def __init__(self, config: Config | None = None):
        super().__init__(config)
        self.layers: list[str] = []
        self.masks: dict[str, Any] = {}
        self.current = 0.0  # the sparsity the masks hold now
        self.events: list[tuple[int, float]] = []  # (step, sparsity) of gradual pruning
        self.rates: dict[str, float] = {}  # scope=sensitivity: each layer's final rate

    # -- selection and masks --------------------------------------------------------------
    @property
    def nm(self) -> tuple[int, int] | None:
        return parse_pattern(self.config.pattern)

    def select_layers(self, model: nn.Module, input_shape=PROBE_SHAPE) -> list[str]:
        c = self.config
        layers = prunable_layers(model, exclude_first=c.exclude_first,
                                 exclude_last=c.exclude_last, exclude=c.exclude,
                                 input_shape=input_shape)
        if not layers:
            raise ConfigError("exclude", c.exclude, "patterns that leave at least one "
                              "conv/linear layer to prune (every one is excluded)")
        if self.nm is not None:
            layers = [n for n in layers if not self.not_divisible(model, n)]
            if not layers:
                raise ConfigError("pattern", c.pattern, "a pattern whose M divides the input "
                                  "channels of at least one prunable layer")
        return layers

    def not_divisible(self, model: nn.Module, name: str) -> bool:
        layer = model.get_submodule(name)
        return layer.weight.shape[input_axis(layer)] % self.nm[1] != 0

    def prune_to(self, model: nn.Module, sparsity: float) -> None:
        modules = dict(model.named_modules())
        weights = {n: modules[n].weight for n in self.layers}
        if self.nm is not None:
            n, m = self.nm
            self.masks = {k: nm_mask(w, n, m, input_axis(modules[k]))
                          for k, w in weights.items()}
            apply_masks(model, self.masks)
            self.current = sparsity
            return
        if self.config.scope == "sensitivity":  # each layer its rate, scaled on the way
            scale = sparsity / self.config.sparsity if self.config.sparsity else 0.0
            self.masks = {k: magnitude_masks({k: w}, self.rates[k] * scale, "layer")[k]
                          for k, w in weights.items()}
        else:
            self.masks = magnitude_masks(weights, sparsity, self.config.scope)
        apply_masks(model, self.masks)
        self.current = sparsity

    def window(self, total_steps: int) -> tuple[int, int]:
        """(begin, end) steps of the gradual schedule for a fine-tuning of `total_steps`."""
        c = self.config
        begin = c.begin_step if c.begin_step is not None else round(0.25 * total_steps)
        end = c.end_step if c.end_step is not None else round(0.75 * total_steps)
        return begin, max(begin, end)

    # -- hooks ----------------------------------------------------------------------------
    def compress(self, ctx, model: nn.Module) -> nn.Module:
        c = self.config
        self.layers = self.select_layers(model, ctx.input_shape)
        if c.scope == "sensitivity":
            self.rates = self.allocate(ctx, model)
        if c.schedule == "oneshot":
            self.prune_to(model, c.sparsity)
        elif c.begin_step == 0:
            self.prune_to(model, c.initial_sparsity)
            self.events.append((0, c.initial_sparsity))
        return model

    def allocate(self, ctx, model: nn.Module) -> dict[str, float]:
        """Each layer's rate from its measured sensitivity (methods/pruning/allocate.py),
        recorded with the table it came from."""
        from methods.pruning import allocate

        c = self.config
        images = ctx.calibration_images(allocate.SENSITIVITY_IMAGES)
        rates = allocate.rates_for(c.sparsity)
        sens = allocate.pruning_sensitivity(model, self.layers, images,
                                            ctx.budget.batch_size, rates)
        modules = dict(model.named_modules())
        numel = {n: modules[n].weight.numel() for n in self.layers}
        chosen = allocate.allocate_sparsity(sens, numel, c.sparsity)
        ctx.report(SensitivityAllocation(
            allocated_sparsity=chosen, sensitivity_images=len(images),
            sensitivity={n: {f"{r:g}": v for r, v in t.items()} for n, t in sens.items()}))
        return chosen

    def finetune_epochs(self, ctx) -> int:
        return ctx.budget.finetune_epochs

    def on_step(self, ctx, model: nn.Module, step: int, total_steps: int) -> None:
        c = self.config
        if c.schedule == "gradual":
            begin, end = self.window(total_steps)
            target = agp_sparsity(step, initial=c.initial_sparsity, final=c.sparsity,
                                  begin=begin, end=end, frequency=c.frequency)
            if target is not None and target > self.current:
                self.prune_to(model, target)
                self.events.append((step, target))
        apply_masks(model, self.masks)

    def finalize(self, ctx, model: nn.Module) -> nn.Module:
        c = self.config
        if not self.layers:
            self.layers = self.select_layers(model, ctx.input_shape)
        completed = self.current >= c.sparsity
        if not completed:  # the gradual schedule did not end within fine-tuning
            self.prune_to(model, c.sparsity)
        apply_masks(model, self.masks)
        counts = layer_zero_counts(model, self.layers)
        zeros = sum(z for z, _ in counts.values())
        total = sum(n for _, n in counts.values())
        ctx.report(UnstructuredSparsity(
            prunable_layers=len(self.layers),
            prunable_weights=total,
            zero_weights=zeros,
            prunable_sparsity=zeros / max(total, 1),
            layer_sparsity={n: round(z / k, 5) for n, (z, k) in counts.items()},
            dead_layers=[n for n, (z, k) in counts.items() if z == k],
            schedule_events=self.events,
            schedule_completed_in_finetuning=completed or c.schedule == "oneshot",
            latency_kernel="dense PyTorch kernels (no sparse kernel: no speedup)",
        ))
        if self.nm is not None:
            every = prunable_layers(model, exclude_first=c.exclude_first,
                                    exclude_last=c.exclude_last, exclude=c.exclude,
                                    input_shape=ctx.input_shape)
            ctx.report(SemiStructured(pattern=c.pattern, dense_layers_not_divisible=[
                n for n in every if n not in self.layers]))
        return model

    # -- artifact -------------------------------------------------------------------------
    def encode(self, ctx, model, tensors):
        return sparsify_state(tensors, self.config.sparse_format)

    def artifact_meta(self, model: nn.Module) -> dict[str, Any]:
        layers = self.layers or self.select_layers(model)
        counts = layer_zero_counts(model, layers)
        return {"prunable_weights": sum(n for _, n in counts.values()),
                "zero_weights": sum(z for z, _ in counts.values()),
                "layers": list(layers)}

    def check(self, model: nn.Module, meta: dict[str, Any]) -> list[str]:
        """The loaded weights are at least as sparse as declared: the target within one
        weight, over all prunable layers (global) or in each layer (layer scope). The layers
        are the ones the artifact names: a later stage (QAT's rebuild) can change what layer
        selection would find on the loaded model, e.g. which layer is the last."""
        c = self.config
        names = meta.get("layers") if meta else None
        modules = dict(model.named_modules())
        if names is not None and (missing := [n for n in names if n not in modules]):
            return [f"the artifact's pruned layers are missing: {', '.join(missing[:5])}"]
        counts = layer_zero_counts(model, names or self.select_layers(model))
        total = sum(n for _, n in counts.values())
        zeros = sum(z for z, _ in counts.values())
        problems = []
        if meta and total != meta.get("prunable_weights"):
            problems.append(f"{total} prunable weights, artifact declares "
                            f"{meta.get('prunable_weights')}")
        if self.nm is not None:
            n_keep, m = self.nm
            modules = dict(model.named_modules())
            for name in counts:
                layer = modules[name]
                most = int(nm_group_counts(layer.weight, m, input_axis(layer)).max())
                if most > n_keep:
                    problems.append(f"layer {name}: a group of {m} holds {most} nonzeros, "
                                    f"more than the pattern's {n_keep}")
        elif c.scope in ("global", "sensitivity"):
            if zeros < c.sparsity * total - 1:
                problems.append(f"{zeros}/{total} prunable weights are zero, below the "
                                f"target {c.sparsity}")
        else:
            for n, (z, k) in counts.items():
                if z < c.sparsity * k - 1:
                    problems.append(f"layer {n}: {z}/{k} zero, below the target {c.sparsity}")
        return problems

    def describe(self) -> str:
        c = self.config
        if self.nm is not None:
            return f"pattern={c.pattern}"
        return f"sparsity={c.sparsity},{c.scope},{c.schedule}"
