"""`prune_structured`: filter/channel pruning that physically removes channels, on
torch-pruning's dependency graph (Fang et al. 2023, DepGraph).

torch-pruning traces the model and groups every layer whose channels are coupled
(residual adds, concatenations, depthwise groups, BatchNorm/PReLU after a conv), so one
pruning decision removes the same channels from all of them. We:

* keep the classifier(s) whole: every conv/linear producing `num_classes` outputs, plus
  the `ignore` name patterns;
* find the groups torch-pruning cannot prune consistently (it cannot see, for example,
  that max-unpooling indices tie a decoder layer's channels to an encoder's, as in ENet
  and SegNet): each group is pruned by one channel on a weightless (meta-device) copy and
  run at two input sizes; groups that break the forward pass are kept whole and listed
  in the run's record. If nothing prunable is left, or the pruned model does not run, the
  run fails with a message saying so and the grid goes on;
* rank channels by `importance`, one of torch-pruning's criteria: L1 / L2 filter norm
  (Li et al. 2017), BatchNorm scale as in network slimming (Liu et al. 2017), first-order
  Taylor on a few training batches (Molchanov et al. 2019), LAMP (Lee et al. 2021: L2
  scores normalised by the layer's larger ones, which only matters when ranking
  globally) or FPGM (He et al. 2019: distance to the layer's geometric median) within each
  group or globally, and remove `ratio` of them, in `iterative_steps` steps with a share
  of the fine-tuning budget between steps; with `round_to=N` every pruned group keeps
  the nearest multiple of N channels (docs/pruning.md measured what that buys per runtime);
* record every resized module's new shape in the artifact, so the loader can resize a
  freshly built zoo model before the weights load (`rebuild`).

The result is a smaller dense model: fewer parameters, MAdds and (usually) latency.
"""

from __future__ import annotations

import fnmatch
import itertools
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import nn

from bench.config import ConfigError, Settings, setting
from bench.facts import Fact
from bench.method import Method, register_method
from methods.pruning.channels import ROOT_TYPES, attention_heads, classifier_layers, no_inplace

IMPORTANCES = ("l1", "l2", "bn_scale", "taylor", "lamp", "fpgm")
NEEDS_GRADIENTS = ("taylor",)  # criteria scored from loss gradients on training batches
# module attributes that carry a channel count; resized together with the tensors
SHAPE_ATTRS = ("in_channels", "out_channels", "groups", "num_features", "in_features",
               "out_features", "num_parameters", "num_channels", "num_groups",
               "normalized_shape")
CHECK_SIZES = ((64, 64), (61, 93))  # (H, W) the pruned model must run at
PROBE_SIZES = ((32, 32), (29, 45))  # (H, W) of the cheap per-group probes


# -- shapes: what the artifact records and the loader restores -------------------------

def out_width(module: nn.Module) -> int | None:
    """The channel count a group root's pruning changes: a convolution's output channels,
    a linear layer's output features."""
    return getattr(module, "out_channels", getattr(module, "out_features", None))


def module_shapes(model: nn.Module) -> dict[str, dict[str, Any]]:
    """name -> {"attrs": channel counts, "tensors": shapes of its own params/buffers}."""
    out = {}
    for name, m in model.named_modules():
        own = itertools.chain(m.named_parameters(recurse=False), m.named_buffers(recurse=False))
        tensors = {k: list(t.shape) for k, t in own if t is not None}
        if not tensors:
            continue
        attrs = {}
        for a in SHAPE_ATTRS:
            v = getattr(m, a, None)
            if isinstance(v, (int, tuple)) and not isinstance(v, bool):
                attrs[a] = list(v) if isinstance(v, tuple) else v
        out[name] = {"attrs": attrs, "tensors": tensors}
    return out


def resize_to_fit(model: nn.Module, shapes: dict[str, dict[str, Any]]) -> nn.Module:
    """Give the named modules the recorded channel counts and empty tensors of the
    recorded shapes; `load_state_dict(strict=True)` then fills (and checks) them."""
    for name, rec in shapes.items():
        try:
            m = model.get_submodule(name)
        except AttributeError:
            raise ValueError(f"pruned module {name!r} does not exist in the built model") from None
        for a, v in rec.get("attrs", {}).items():
            setattr(m, a, tuple(v) if isinstance(v, list) else v)
        for t, shape in rec.get("tensors", {}).items():
            old = getattr(m, t, None)
            if not isinstance(old, torch.Tensor):
                raise ValueError(f"module {name!r} has no tensor {t!r} to resize")
            new = torch.empty(shape, dtype=old.dtype, device=old.device)
            if isinstance(old, nn.Parameter):
                setattr(m, t, nn.Parameter(new, requires_grad=old.requires_grad))
            else:
                m._buffers[t] = new
    return model


# -- torch-pruning ----------------------------------------------------------------------

def ignored_by_pattern(model: nn.Module, patterns: list[str]) -> list[nn.Module]:
    named = dict(model.named_modules())
    out = []
    for pat in patterns:
        hit = fnmatch.filter([n for n in named if n], pat)
        if not hit:
            raise ConfigError("ignore", pat, "patterns that match modules of the model")
        out += [named[n] for n in hit]
    return out


def make_importance(name: str):
    import torch_pruning as tp

    if name not in IMPORTANCES:
        raise ConfigError("importance", name, "one of " + ", ".join(IMPORTANCES))
    if name == "l1":
        return tp.importance.MagnitudeImportance(p=1)
    if name == "l2":
        return tp.importance.MagnitudeImportance(p=2)
    if name == "bn_scale":
        return tp.importance.BNScaleImportance()
    if name == "lamp":
        return tp.importance.LAMPImportance(p=2)
    if name == "fpgm":
        return tp.importance.FPGMImportance(p=2)
    return tp.importance.TaylorImportance()


def _runs(model: nn.Module, sizes, device) -> Exception | None:
    try:
        with torch.no_grad():
            for h, w in sizes:
                model(torch.zeros(1, 3, h, w, device=device))
    except Exception as e:  # noqa: BLE001 - any failure means "does not run"
        return e
    return None


def _snapshot(m: nn.Module) -> tuple:
    return (dict(m._parameters), dict(m._buffers),
            {a: getattr(m, a) for a in SHAPE_ATTRS if hasattr(m, a)})


def _restore(m: nn.Module, snap: tuple) -> None:
    params, buffers, attrs = snap
    m._parameters.clear()
    m._parameters.update(params)
    m._buffers.clear()
    m._buffers.update(buffers)
    for a, v in attrs.items():
        setattr(m, a, v)


def probe_group(model: nn.Module, group, names: dict[nn.Module, str], sizes,
                device) -> Exception | None:
    """Prune `group`'s layers in place, run the model at `sizes`, then put every touched
    layer back exactly (torch-pruning replaces tensors rather than editing them, so the
    original parameter objects are restored). Returns the error, or None if it ran."""
    touched = {dep.target.module for dep, _ in group if dep.target.module in names}
    saved = {m: _snapshot(m) for m in touched}
    try:
        for dep, idxs in group:
            if dep.target.module in names:  # graph-only ops (concat, add) hold no tensors
                dep(idxs)
        return _runs(model, sizes, device)
    except Exception as e:  # noqa: BLE001
        return e
    finally:
        for m, snap in saved.items():
            _restore(m, snap)


def probe_channels(group, graph, n: int, heads: dict[nn.Module, int]) -> list[int]:
    """The channels a probe removes from a group of `n`: the first and last, or, where the
    group holds an attention projection split into heads (`heads`), the first dimension
    of every head, as torch-pruning's head-dimension pruning would."""
    for dep, _ in group:
        m = dep.target.module
        if m in heads and graph.is_out_channel_pruning_fn(dep.handler):
            width = getattr(m, "out_features", getattr(m, "out_channels", 0))
            per = width // heads[m]  # the head dimension
            if per and n % per == 0:
                return list(range(0, n, per))
    return [0, n - 1]


def unsupported_groups(model: nn.Module, graph, groups, sizes=PROBE_SIZES,
                       heads: dict[nn.Module, int] | None = None) -> list[tuple]:
    """Groups whose pruning breaks the forward pass, with the error each raised.

    Each group loses its first and last channel (one dimension per head for attention
    groups; in place, undone after the probe) and the model must still run at every size
    in `sizes`. torch-pruning sees couplings through autograd only; a channel tie through
    integer indices (max-unpooling) or a hard-coded width escapes it.
    """
    names = {m: n for n, m in model.named_modules()}
    device = next(model.parameters()).device
    before = module_shapes(model)
    heads = attention_heads(model) if heads is None else heads
    bad = []
    for g in groups:
        root, fn = g[0][0].target.module, g[0][0].handler
        n = len(g[0][1])
        if n < 2:
            continue
        idxs = probe_channels(g, graph, n, heads)
        err = probe_group(model, graph.get_pruning_group(root, fn, idxs=idxs), names,
                          sizes, device)
        if err is not None:
            bad.append((g, err))
    if module_shapes(model) != before:
        raise RuntimeError("prune_structured: a probe did not restore the model; "
                           "this is a bug in prune_structured")
    return bad


def out_pruned_layers(group, graph) -> list[nn.Module]:
    return [dep.target.module for dep, _ in group
            if graph.is_out_channel_pruning_fn(dep.handler)
            and isinstance(dep.target.module, nn.Module)]


def rounded_keep(n: int, keep: int, multiple: int) -> int:
    """Channels a group of `n` keeps when `keep` is asked and counts must be multiples of
    `multiple`: the nearest multiple, never none (at least one multiple) and never more than
    `n`, so a group smaller than one multiple stays whole."""
    k = max(multiple, int(round(keep / multiple)) * multiple)
    return min(n, k)


def rounding_pruner() -> type:
    """torch-pruning's BasePruner with `rounded_keep` as its rounding (torch-pruning is
    imported on first use, as everywhere in this module)."""
    import torch_pruning as tp

    class RoundingPruner(tp.pruner.BasePruner):
        """torch-pruning's pruner whose `round_to` rounds the kept channels to the nearest
        multiple rather than down: its own rounding leaves a group of 13 asked to keep 7 at
        round_to=8 with none, which removes the whole layer."""

        def _round_to(self, n_pruned, current_channels, round_to):
            return current_channels - rounded_keep(current_channels,
                                                   current_channels - n_pruned, round_to)

    return RoundingPruner


@dataclass
class ChannelPruning(Fact):
    """Parameters before and after, the channel groups found, those kept whole because
    pruning them breaks the forward pass, those the criterion left whole (e.g. bn_scale
    scores no group without a BatchNorm, such as U-Net's transposed convolutions, so its
    ratio is not the one asked for: the leaderboard's MAdds × shows by how much), the layers
    never pruned, the epoch split."""

    key: ClassVar[str] = "prune_structured"
    params_before: int
    params_after: int
    param_ratio: float
    groups: int
    groups_kept_unsupported: list[dict[str, Any]]
    ignored_layers: list[str]
    finetune_epochs_per_step: list[int]
    groups_left_whole: list[str] = field(default_factory=list)


@register_method("prune_structured", family="prune")
class StructuredPruning(Method):
    version = 1
    # the ratio curve at the default criterion, then the criteria side by side at half the
    # channels (l1 is the ratio-0.5 row). LAMP ranks exactly as l2 within a group, so its
    # row ranks globally, beside global l2 as its control (docs/pruning.md)
    sweep = [{"ratio": 0.25}, {"ratio": 0.5},
             {"ratio": 0.5, "importance": "bn_scale"}, {"ratio": 0.5, "importance": "taylor"},
             {"ratio": 0.5, "importance": "fpgm"},
             {"ratio": 0.5, "importance": "lamp", "global_pruning": True},
             {"ratio": 0.5, "importance": "l2", "global_pruning": True}]

    @dataclass
    class Config(Settings):
        # fraction of channels removed (per group, or overall if global)
        ratio: float = setting(0.25, ge=0.0, lt=1.0)
        # l1 | l2 | bn_scale | taylor | lamp | fpgm
        importance: str = setting("l1", choices=IMPORTANCES)
        global_pruning: bool = False  # rank channels across layers instead of within each
        iterative_steps: int = setting(1, ge=1)  # prune in steps, fine-tuning between them
        ignore: list[str] = setting([])  # fnmatch patterns of module names
        max_layer_ratio: float = setting(0.9, gt=0.0, lt=1.0)  # global: most of one layer
        taylor_batches: int = setting(4, ge=1)  # training batches that rank channels (taylor)
        # keep every pruned group's channel count a multiple of this (1: wherever `ratio`
        # lands); vectorised CPU kernels run multiples of 8/16 lanes (docs/pruning.md)
        round_to: int = setting(1, ge=1, new=True)  # new: runs recorded before keep their ids

    def __init__(self, config: Config | None = None):
        super().__init__(config)
        self.shapes_before: dict[str, dict[str, Any]] | None = None
        self.params_before: int | None = None
        self.steps_epochs: list[int] = []

    def epoch_split(self, finetune_epochs: int) -> list[int]:
        """Fine-tuning epochs after each pruning step; the last share is the runner's."""
        k = self.config.iterative_steps
        split = [finetune_epochs // k + (1 if i < finetune_epochs % k else 0) for i in range(k)]
        return split[::-1]

    def compress(self, ctx, model: nn.Module) -> nn.Module:
        import torch_pruning as tp

        c = self.config
        model.eval()
        device = next(model.parameters()).device
        example = torch.zeros(*ctx.input_shape, device=device)
        self.shapes_before = module_shapes(model)
        self.params_before = sum(p.numel() for p in model.parameters())
        names = {m: n for n, m in model.named_modules()}

        ignored = classifier_layers(model, ctx.num_classes) + ignored_by_pattern(model, c.ignore)
        with no_inplace(model):
            graph = tp.DependencyGraph().build_dependency(model, example_inputs=example)
        groups = list(graph.get_all_groups(ignored_layers=ignored, root_module_types=ROOT_TYPES))
        heads = attention_heads(model)
        bad = unsupported_groups(model, graph, groups, heads=heads)
        for g, _ in bad:
            ignored += out_pruned_layers(g, graph)
        if len(bad) == len(groups):
            raise RuntimeError(
                f"prune_structured: torch-pruning cannot prune any channel group of "
                f"{ctx.spec.model} consistently ({len(groups)} groups, e.g. "
                f"{names.get(groups[0][0][0].target.module) if groups else '-'}: "
                f"{bad[0][1] if bad else 'no groups'})")
        skipped = {id(g) for g, _ in bad}
        roots = {g[0][0].target.module for g in groups if id(g) not in skipped} - set(ignored)
        widths = {m: out_width(m) for m in roots if out_width(m) is not None}
        with no_inplace(model):
            pruner = rounding_pruner()(
                model, example, importance=make_importance(c.importance),
                global_pruning=c.global_pruning, pruning_ratio=c.ratio,
                max_pruning_ratio=c.max_layer_ratio if c.global_pruning else 1.0,
                iterative_steps=c.iterative_steps, ignored_layers=ignored,
                root_module_types=list(ROOT_TYPES), num_heads=heads,
                prune_head_dims=True, prune_num_heads=False,
                round_to=c.round_to if c.round_to > 1 else None)
        self.steps_epochs = self.epoch_split(ctx.budget.finetune_epochs)
        lr = ctx.budget.lr * ctx.budget.finetune_lr_scale
        for step in range(c.iterative_steps):
            model.eval()
            if c.importance in NEEDS_GRADIENTS:
                self._taylor_gradients(model, ctx)
            pruner.step()
            model.zero_grad(set_to_none=True)
            if step < c.iterative_steps - 1 and self.steps_epochs[step]:
                ctx.train(model, self.steps_epochs[step], lr, (),
                          desc=f"finetune prune_structured step {step + 1}")
        del pruner, graph
        model.eval()
        left_whole = sorted({names.get(m, "?") for m, n in widths.items() if out_width(m) == n})
        err = _runs(model, CHECK_SIZES + (tuple(ctx.input_shape[-2:]),), device)
        if err is not None:
            raise RuntimeError(f"prune_structured: {ctx.spec.model} no longer runs after "
                               f"torch-pruning removed channels ({type(err).__name__}: {err}); "
                               f"add the offending layers to `ignore`")
        params = sum(p.numel() for p in model.parameters())
        if c.ratio > 0 and params == self.params_before:
            raise RuntimeError(f"prune_structured: no channel of {ctx.spec.model} was removed "
                               f"(importance {c.importance!r} scored no prunable group; "
                               f"bn_scale needs BatchNorm layers)")
        ctx.report(ChannelPruning(
            params_before=self.params_before,
            params_after=params,
            param_ratio=params / self.params_before,
            groups=len(groups),
            groups_kept_unsupported=[
                {"root": names.get(g[0][0].target.module, "?"), "coupled": len(g),
                 "error": f"{type(e).__name__}: {str(e)[:200]}"} for g, e in bad],
            ignored_layers=sorted({names[m] for m in ignored if m in names}),
            finetune_epochs_per_step=self.steps_epochs,
            groups_left_whole=left_whole if c.ratio > 0 else [],
        ))
        return model

    def _taylor_gradients(self, model: nn.Module, ctx) -> None:
        """Accumulate loss gradients over a few training batches (eval-mode BatchNorm,
        so ranking does not move the running statistics)."""
        from bench.train import make_loader, task_loss

        loader = make_loader(ctx.dataset("train", train=True), ctx.budget.batch_size,
                             shuffle=True, seed=ctx.seed)
        model.zero_grad(set_to_none=True)
        device = next(model.parameters()).device
        with torch.enable_grad():
            for i, (images, targets) in enumerate(loader):
                if i >= self.config.taylor_batches:
                    break
                logits = model(images.to(device))
                task_loss(logits, targets.to(device), ctx.spec.train.loss,
                          ctx.ignore_index).backward()

    def finetune_epochs(self, ctx) -> int:
        split = self.steps_epochs or self.epoch_split(ctx.budget.finetune_epochs)
        return split[-1]

    # -- artifact -------------------------------------------------------------------------
    def artifact_meta(self, model: nn.Module) -> dict[str, Any]:
        after = module_shapes(model)
        before = self.shapes_before or {}
        return {"modules": {n: s for n, s in after.items() if before.get(n) != s},
                "params": sum(p.numel() for p in model.parameters())}

    def rebuild(self, model: nn.Module, meta: dict[str, Any]) -> nn.Module:
        return resize_to_fit(model, meta.get("modules", {}))

    def check(self, model: nn.Module, meta: dict[str, Any]) -> list[str]:
        problems = []
        shapes = module_shapes(model)
        for name, rec in meta.get("modules", {}).items():
            if shapes.get(name) != rec:
                problems.append(f"module {name}: loaded shape {shapes.get(name)} != declared {rec}")
        params = sum(p.numel() for p in model.parameters())
        if "params" in meta and params != meta["params"]:
            problems.append(f"{params} parameters, artifact declares {meta['params']}")
        err = _runs(model.eval(), CHECK_SIZES, next(model.parameters()).device)
        if err is not None:
            problems.append(f"pruned model does not run: {type(err).__name__}: {err}")
        return problems

    def describe(self) -> str:
        c = self.config
        return (f"ratio={c.ratio},{c.importance}{',global' if c.global_pruning else ''}"
                f"{f',steps={c.iterative_steps}' if c.iterative_steps > 1 else ''}"
                f"{f',round_to={c.round_to}' if c.round_to > 1 else ''}")
