"""The method plugin API: the one contract every compression method follows (the shape of
ShrinkBench strategies and Torch-Pruning pruners). docs/adding-a-method.md walks through it.

How the runner drives a pipeline `a+b+c` (a single method is a pipeline of one stage):

    model = trained baseline (cached)
    for stage in pipeline:
        model = stage.compress(ctx, model)             # prune, replace layers, attach hooks
        if stage.finetune_epochs(ctx):                 # the shared training loop, with the
            train(model, stage.finetune_lr(ctx),       # `loss` and `on_step` of every
                  loss=..., on_step=...)               # stage so far
    for stage: model = stage.finalize(ctx, model)      # bake masks, remove hooks
    meta = stage.artifact_meta(model) for each stage   # header: what `rebuild` needs
    tensors = stage.encode(ctx, model, tensors) ...    # storage encodings, in order
    artifact -> load: stage.rebuild(model, meta), state loads strictly,
                      stage.check(model, meta) == []   # or the run fails
    evaluate and time the reloaded model (or what `predictor(ctx, model, path)` returns)

The contract:

* **Hooks.** Every hook that runs inside a run takes the run's context first: `compress`,
  `finetune_epochs`, `finetune_lr`, `loss`, `on_step`, `finalize`, `encode`, `predictor`,
  `baseline_predictor`.
  `ctx` (bench/context.py `RunContext`) is never None. The hooks that run without a run
  take no context: `baselines_needed` and `cost_factor` (planning a grid), and
  `artifact_meta`, `rebuild`, `check`, `describe`, which work from the model and the
  artifact alone, so that
  `load_model` and `verify` need nothing but the file. A plugin overrides only the hooks
  it needs; the defaults do nothing.
* **Declarations.** Everything the harness reads without calling a hook is a class
  attribute declared on `Method` with its default: `name` and `family` (set by
  `@register_method`), `version`, `Config`, `sweep`, `runtime`, `builds_student`,
  `trains_student`. Nothing is read with `getattr(..., default)`.
* **Facts.** What a run learns that the record keeps (a teacher's score, onnxruntime
  timings, per-layer sparsity...) is reported as a typed `Fact` with `ctx.report(fact)`;
  bench/facts.py holds the schema and `read(record, Fact)` for whoever reads records.
* **Configuration.** `Config` is a dataclass nested in the class, `class
  Config(Settings)` (bench/config.py), whose fields declare their default and valid
  range with `setting(...)`; it is built from `--set field=value`. Its `__post_init__`
  checks every field's type and range and raises `ConfigError` naming the method, the
  field, the value and what is valid; every command prints it as one line and exits 2.
  `register_method` refuses a Config that is not such a dataclass.
* **Identity.** `version` is part of every run id: bump it when a change alters results.
  A setting added after runs were recorded is declared `setting(..., new=True)`: left
  out of the run id at its default, so those runs keep their ids.
* **Errors during a run.** `NotApplicable`: the configured method asks for something this
  model lacks (recorded, not retried). Any other exception fails the run with its reason.

Plugins live in `methods/` (one module each, found by the loader) or in another package
that names its modules in the `segbench.methods` entry-point group. Building blocks live
in subpackages of `methods/` (codecs, quant, onnx, pruning, distill, factorize), which
register no method.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import pkgutil
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass, fields
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from torch import nn

from bench.artifact import EncodedTensor
from bench.config import ConfigError, Settings, identity_fields
from bench.headline import HEADLINE
from bench.registry import Registry, UnknownNameError

if TYPE_CHECKING:
    from bench.context import RunContext


class NotApplicable(ValueError):
    """The method, as configured, asks for something this model does not have (a layer set,
    a scope without eligible layers). Not a fault of the run: it is recorded with status
    "not applicable" and its reason, and a re-run does not retry it."""


@dataclass
class NoConfig(Settings):
    """A method without settings."""


class Method:
    """Base class of compression methods. Subclasses are registered with `@register_method`;
    the module docstring is the contract."""

    # -- declaration: what the harness reads without running a hook -------------------
    name: ClassVar[str] = ""  # set by @register_method
    family: ClassVar[str | None] = None  # `make bench METHOD=<family>` runs the family's sweep
    version: ClassVar[int] = 1  # part of every run id: bump it when results change
    Config: ClassVar[type] = NoConfig  # the settings dataclass (`--set field=value`)
    # the configs a family run expands this method to (overrides of Config's defaults)
    sweep: ClassVar[list[dict[str, Any]]] = [{}]
    runtime: ClassVar[str] = "torch"  # what `predictor` evaluates with ("onnxruntime", ...)
    # `compress` returns a freshly built, untrained student (a distiller after it trains it)
    builds_student: ClassVar[bool] = False
    # the stage trains the student itself (a distiller); at most one per pipeline
    trains_student: ClassVar[bool] = False

    def __init__(self, config: Any | None = None):
        self.config = config if config is not None else self.Config()

    # -- the run: every hook takes the run's context first ------------------------------
    def compress(self, ctx: RunContext, model: nn.Module) -> nn.Module:
        """Transform the trained model (prune, replace layers, attach hooks)."""
        return model

    def finetune_epochs(self, ctx: RunContext) -> int:
        """Epochs of fine-tuning after `compress` (0: none). Default: none."""
        return 0

    def finetune_lr(self, ctx: RunContext) -> float:
        """Starting learning rate of that fine-tuning (poly decay). Default: the budget's
        lr times its `finetune_lr_scale`; a method that trains from scratch returns
        `ctx.budget.lr`."""
        return ctx.budget.lr * ctx.budget.finetune_lr_scale

    def loss(self, ctx: RunContext, model: nn.Module, images: torch.Tensor,
             targets: torch.Tensor, logits: torch.Tensor, task_loss: torch.Tensor) -> torch.Tensor:
        """The training loss; distillation and regularisers replace or extend `task_loss`."""
        return task_loss

    def on_step(self, ctx: RunContext, model: nn.Module, step: int, total_steps: int) -> None:
        """Called after every optimizer step of fine-tuning (pruning schedules, masks)."""

    def finalize(self, ctx: RunContext, model: nn.Module) -> nn.Module:
        """Make the model exportable: bake masks and reparametrisations, remove hooks."""
        return model

    def encode(self, ctx: RunContext, model: nn.Module,
               tensors: dict[str, EncodedTensor]) -> dict[str, EncodedTensor]:
        """Re-encode the state tensors for storage (sparse, codebook, entropy coding...)."""
        return tensors

    def predictor(self, ctx: RunContext, model: nn.Module, artifact_path) -> Callable | None:
        """A runtime other than eager PyTorch (named by `runtime`, e.g. onnxruntime) used
        for evaluation and latency: returns `f(images) -> logits`; None keeps PyTorch."""
        return None

    def baseline_predictor(self, ctx: RunContext, base: nn.Module) -> Callable | None:
        """The trained baseline in this stage's runtime, for the paired latency the runner
        takes (the row and its baseline timed interleaved, bench/latency.py): e.g. the float
        model exported to onnxruntime. None times the eager PyTorch baseline."""
        return None

    # -- no run: planning a grid, and the artifact alone ------------------------------
    def baselines_needed(self, model: str, model_kwargs: dict[str, Any]
                         ) -> list[tuple[str, dict[str, Any]]]:
        """Other zoo models whose trained baselines this method uses (a distillation
        teacher), as (name, kwargs): executors train them before this run starts."""
        return []

    def cost_factor(self) -> float:
        """How many times the own compute of a run with this stage at its cheapest setting
        a run with it as configured takes (1.0: its settings do not change the cost). The
        planner (bench/plan.py) prices a run from finished records only of runs whose
        stages declare the same factors, and in its MAdds estimate multiplies the part that
        is not training (calibration, evaluation, timing, export) by 1 + the stages' excess
        over 1: a setting that swaps in a far costlier algorithm (ptq's AdaRound, GPTQ)
        says so here, from measurements quoted where the factor is declared."""
        return 1.0

    def artifact_meta(self, model: nn.Module) -> dict[str, Any]:
        """JSON-able facts `rebuild` needs to recreate the model's structure on load."""
        return {}

    def rebuild(self, model: nn.Module, meta: dict[str, Any]) -> nn.Module:
        """Turn a freshly built zoo model into this stage's structure before weights load."""
        return model

    def check(self, model: nn.Module, meta: dict[str, Any]) -> list[str]:
        """Problems with the declared property on the loaded tensors (empty list: fine);
        the run calls it on the model it reloads, `python -m bench verify` again."""
        return []

    def describe(self) -> str:
        """A short label for the leaderboard, e.g. `sparsity=0.9`."""
        return config_label(self.config)


def config_label(config: Any) -> str:
    if not dataclasses.is_dataclass(config):
        return ""
    d = dataclasses.asdict(config)
    defaults = dataclasses.asdict(type(config)())
    return ",".join(f"{k}={_fmt(v)}" for k, v in d.items() if v != defaults.get(k)) or ""


def _fmt(v: Any) -> str:
    return json.dumps(v) if isinstance(v, (list, dict)) else str(v)


# -- registry ---------------------------------------------------------------------------

def _load_plugins() -> None:
    import methods

    for mod in pkgutil.iter_modules(methods.__path__):
        # plugins are the modules; subpackages (codecs, quant, ...) are building blocks
        if not mod.name.startswith("_") and not mod.ispkg:
            importlib.import_module(f"methods.{mod.name}")
    for ep in entry_points(group="segbench.methods"):
        try:
            ep.load()
        except ValueError:
            pass  # already registered (the plugin was imported another way)


METHODS: Registry[type[Method]] = Registry("method", loader=_load_plugins)
PIPELINES: Registry[tuple[str, list[dict[str, Any]]]] = Registry("pipeline preset")


def register_method(name: str, family: str | None = None):
    """Class decorator: `@register_method("prune_unstructured", family="prune")`."""

    def deco(cls: type[Method]) -> type[Method]:
        if not (isinstance(cls, type) and issubclass(cls, Method)):
            raise TypeError(f"@register_method({name!r}) must decorate a Method subclass")
        if not (dataclasses.is_dataclass(cls.Config) and issubclass(cls.Config, Settings)):
            raise TypeError(f"@register_method({name!r}): {cls.__name__}.Config must be a "
                            "dataclass subclassing bench.config.Settings")
        cls.name = name
        if family is not None:
            cls.family = family
        METHODS.add(name, cls)
        return cls

    return deco


def register_pipeline(name: str, spec: str, configs: list[dict[str, Any]] | None = None,
                      family: str | None = None) -> None:
    """A named preset of a `+` pipeline, e.g. deep_compression = prune+kmeans+huffman."""
    stages = spec.split("+")
    configs = configs or [{} for _ in stages]
    if len(configs) != len(stages):
        raise ValueError(f"pipeline {name!r}: {len(stages)} stages but {len(configs)} configs")
    PIPELINES.add(name, (spec, configs))
    PIPELINE_MODULES[name] = sys._getframe(1).f_globals.get("__name__", "")
    if family:
        _PIPELINE_FAMILY[name] = family


_PIPELINE_FAMILY: dict[str, str] = {}
PIPELINE_MODULES: dict[str, str] = {}  # preset -> module that registered it


def families() -> dict[str, list[str]]:
    """family name -> member methods and pipeline presets. Every method is at least the
    family of itself (a method with no family is its own family)."""
    out: dict[str, list[str]] = {}
    for n in METHODS.names():
        out.setdefault(METHODS.get(n).family or n, []).append(n)
    for n, fam in _PIPELINE_FAMILY.items():
        out.setdefault(fam, []).append(n)
    return out


# -- configs ----------------------------------------------------------------------------

def make_config(cls: type[Method], overrides: dict[str, Any]) -> Any:
    """`cls.Config` with `overrides`; an unknown field or a bad value raises ConfigError
    naming the method, the field, the value and what is valid."""
    valid = {f.name for f in fields(cls.Config)}
    bad = sorted(set(overrides) - valid)
    if bad:
        raise ConfigError(bad[0], overrides[bad[0]], "a setting of this method: "
                          f"{', '.join(sorted(valid)) or '(it has none)'}", cls.name)
    try:
        return cls.Config(**overrides)
    except ConfigError as e:
        e.method = e.method or cls.name
        raise


@dataclass
class Stage:
    method: Method

    @property
    def name(self) -> str:
        return self.method.name

    def config_dict(self) -> dict[str, Any]:
        """The stage's settings as run ids hash them and records and artifact headers
        hold them: a setting added later (`setting(..., new=True)`) only where it differs
        from its default (bench.config.identity_fields)."""
        c = self.method.config
        return identity_fields(c) if dataclasses.is_dataclass(c) else {}


@dataclass
class Variant:
    """One concrete method entry of a grid: a pipeline of configured stages."""

    spec: str  # e.g. "prune_unstructured+kmeans"
    label: str  # e.g. "deep_compression" or the spec
    stage_overrides: list[dict[str, Any]]

    def stages(self) -> list[Stage]:
        out = []
        for name, ov in zip(self.spec.split("+"), self.stage_overrides):
            cls = METHODS.get(name)
            out.append(Stage(cls(make_config(cls, ov))))
        return out

    def resolved(self) -> list[dict[str, Any]]:
        return [{"method": s.name, "version": s.method.version, "config": s.config_dict()}
                for s in self.stages()]

    def describe(self) -> str:
        parts = [s.method.describe() for s in self.stages()]
        return "; ".join(p for p in parts if p)


def _route_sets(spec: str, sets: dict[str, Any]) -> list[dict[str, Any]]:
    """Assign `--set` keys to stages: `stage.field=v` names one, a bare `field=v` goes to
    every stage that has the field (and is an error if none has it)."""
    names = spec.split("+")
    per = [dict() for _ in names]
    for key, val in sets.items():
        if "." in key:
            stage, fld = key.split(".", 1)
            if stage not in names:
                raise UnknownNameError(
                    f"--set {key}: {stage!r} is not a stage of {spec!r}; stages: {', '.join(names)}"
                )
            per[names.index(stage)][fld] = val
            continue
        hit = False
        for i, n in enumerate(names):
            if key in {f.name for f in fields(METHODS.get(n).Config)}:
                per[i][key] = val
                hit = True
        if not hit:
            valid = sorted({f.name for n in names for f in fields(METHODS.get(n).Config)})
            raise UnknownNameError(
                f"--set {key}: no stage of {spec!r} has that setting; valid: "
                f"{', '.join(valid) or '(none)'}"
            )
    return per


def expand_methods(spec: str, sets: dict[str, Any] | None = None) -> list[Variant]:
    """Expand a METHOD string into grid variants.

    `all` = every family; a family name = its members with their sweeps; a comma list =
    the union; `a+b` = a pipeline; a preset name (e.g. `deep_compression`) = its pipeline.
    `--set` overrides apply on top of every variant they fit.
    """
    sets = dict(sets or {})
    fams = families()
    out: list[Variant] = []
    for item in [s.strip() for s in spec.split(",") if s.strip()]:
        if item == "all":
            names = [m for f in sorted(fams) for m in fams[f]]
            out.extend(v for n in names for v in _expand_one(n, sets, sweep=True, lenient=True))
        elif item == "headline":  # one configuration per family (bench/headline.py)
            out.extend(headline_variants(sets))
        elif item in fams and not (item in METHODS and fams[item] == [item]):
            out.extend(v for n in fams[item] for v in _expand_one(n, sets, sweep=True,
                                                                  lenient=True))
        else:
            out.extend(_expand_one(item, sets, sweep=False, lenient=False))
    if not out:
        raise UnknownNameError(f"method spec {spec!r} names no methods")
    seen, unique = set(), []
    for v in out:
        key = json.dumps([v.spec, v.stage_overrides], sort_keys=True)
        if key not in seen:
            seen.add(key)
            unique.append(v)
    return unique


def _expand_one(item: str, sets: dict[str, Any], sweep: bool, lenient: bool) -> list[Variant]:
    if item in PIPELINES:
        spec, base = PIPELINES.get(item)
        label = item
        bases = [[dict(c) for c in base]]
    else:
        for n in item.split("+"):
            if n not in METHODS:
                valid = sorted(set(METHODS.names()) | set(PIPELINES.names()) | set(families()))
                raise UnknownNameError(
                    f"unknown method {n!r}; valid choices: {', '.join(valid + ['all', 'headline'])}"
                )
        spec, label = item, item
        stages = item.split("+")
        if sweep and len(stages) == 1:
            bases = [[dict(s)] for s in METHODS.get(item).sweep]
        else:
            bases = [[{} for _ in stages]]
    if sets:
        try:
            routed = _route_sets(spec, sets)
        except UnknownNameError:
            if lenient:  # a family-wide --set applies only to the members that have it
                routed = [{} for _ in spec.split("+")]
                for i, n in enumerate(spec.split("+")):
                    names = {f.name for f in fields(METHODS.get(n).Config)}
                    routed[i] = {k: v for k, v in sets.items() if k in names}
            else:
                raise
        bases = [[{**b, **r} for b, r in zip(base, routed)] for base in bases]
    variants = [Variant(spec, label, base) for base in bases]
    for v in variants:
        v.stages()  # validate configs now, not halfway through a grid
    return variants


def stages_from_record(resolved: Iterable[dict[str, Any]]) -> list[Stage]:
    """Rebuild configured stages from a run record / artifact header."""
    out = []
    for r in resolved:
        cls = METHODS.get(r["method"])
        out.append(Stage(cls(make_config(cls, r.get("config", {})))))
    return out


def stage_cost_factors(resolved: list[dict[str, Any]]) -> tuple[float, ...]:
    """Each resolved stage's `Method.cost_factor`, for the planner's record key and its MAdds
    estimate; 1.0 for every stage when a record names a method or settings this segbench no
    longer knows (an old record), so it still prices like its plain configuration."""
    try:
        return tuple(st.method.cost_factor() for st in stages_from_record(resolved))
    except Exception:  # noqa: BLE001 - a record of an uninstalled plugin or old settings
        return (1.0,) * len(resolved)


def headline_variants(sets: dict[str, Any]) -> list:
    """The headline variants with `--set` applied on top (to the stages that have the
    setting). A family without an entry (a plugin's) runs its members at their defaults."""
    out = []
    for fam, members in sorted(families().items()):
        if fam.startswith("_"):
            continue  # private families (tests, examples) are never part of a default grid
        spec, overrides = HEADLINE.get(fam, (None, None))
        items = [spec] if spec else members
        for item in items:
            for v in _expand_one(item, sets, sweep=False, lenient=True):
                if spec and overrides is not None:
                    v.stage_overrides = [{**h, **o}
                                         for h, o in zip(overrides, v.stage_overrides)]
                    v.stages()  # validate the merged configs now
                out.append(v)
    return out
