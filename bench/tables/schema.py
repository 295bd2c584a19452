"""The vocabulary a report module declares its tables in: rows are run specs, columns are
metrics. Declarations are plain frozen data, so a table says *what* it shows and the
engine (bench/tables/engine.py) decides what must run, what is cached and how it prints.

A row names a zoo model (with kwargs) and the run its metric columns read by default. A
column is one of:

* `Field`   - a descriptive value of the row (output stride, a checkmark), no computation;
* `Static`  - a property of the architecture that needs no training (params, MAdds,
  FLOPs, dense size), computed from the freshly built model at the table's input size;
* `Metric`  - a number from a run record (or from evaluating the run's artifact on
  another split or dataset), of the row's run or of the column's own `run` (e.g. the KD
  column of a distillation table runs `kd` on every row's student);
* `Derived` - a function of other columns of the same row (a reduction in %, a check).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

STATIC_METRICS = ("params", "madds", "flops", "dense_size")
# record metrics a Metric column may name (bench/runner.py `metrics`), plus evaluations the
# engine makes itself from a run's artifact: "<split>:<metric>" on the run's own dataset,
# "real:<metric>" on the dataset given by `--set real_dataset=...`
RECORD_METRICS = ("miou", "pixel_acc", "params", "nonzero_params", "sparsity", "madds",
                  "effective_madds", "size_bytes", "dense_size_bytes", "compression_ratio",
                  "latency_ms", "latency_iqr_ms")
EVAL_METRICS = ("miou", "pixel_acc")
EVAL_SOURCES = ("test", "val", "real")

# The smoke budget of the report tables: a handful of images per run, so that regenerating
# every table (about 200 runs, dozens of them DeepLabV3+ ResNet-50) fits a CI job on 2 CPU
# cores. Its numbers check the pipeline, not the methods. One dict for every report, so a
# baseline (e.g. the DeepLabV3+ ResNet-50 teacher) is trained once and shared by all tables.
CI_SMOKE = {"train_images": 8, "eval_images": 4, "batch_size": 4, "latency_runs": 5,
            "latency_warmup": 1, "calibration_images": 4}


@dataclass(frozen=True)
class Run:
    """What to run for a cell: a method spec as `python -m bench run --method` takes it,
    its settings (`--set` of the method), and training-loop overrides (`train.*`)."""

    method: str = "none"
    sets: Mapping[str, Any] = field(default_factory=dict)
    train: Mapping[str, Any] = field(default_factory=dict)
    # settings applied only where the installed plugin has them (a feature another
    # engineer may add later); when one is dropped, `dropped_note` goes into the caption
    optional: Mapping[str, Any] = field(default_factory=dict)
    dropped_note: str = ""

    def describe(self) -> str:
        parts = [self.method]
        parts += [f"{k}={v}" for k, v in sorted(self.sets.items())]
        parts += [f"train.{k}={v}" for k, v in sorted(self.train.items())]
        return " ".join(parts)


@dataclass(frozen=True)
class Row:
    model: str
    fields: Mapping[str, Any] = field(default_factory=dict)  # Field column key -> value
    model_kwargs: Mapping[str, Any] = field(default_factory=dict)
    run: Run = Run()


@dataclass(frozen=True)
class Field:
    header: str
    key: str = ""  # the Row.fields key (default: the header)

    @property
    def name(self) -> str:
        return self.key or self.header


@dataclass(frozen=True)
class Static:
    header: str
    metric: str  # one of STATIC_METRICS
    fmt: str = "num"
    key: str = ""

    @property
    def name(self) -> str:
        return self.key or self.header


@dataclass(frozen=True)
class Metric:
    header: str
    metric: str  # a RECORD_METRICS key, or "<source>:<metric>" with source in EVAL_SOURCES
    run: Run | None = None  # None: the row's run
    fmt: str = "num"
    key: str = ""
    requires: str = ""  # a table option (e.g. "real_dataset") without which it is dropped

    @property
    def name(self) -> str:
        return self.key or self.header


@dataclass(frozen=True)
class Derived:
    """fn(values) -> value, where `values` maps the names of earlier columns of the row to
    their raw values (None where a cell has no number); None means "cannot be computed"."""

    header: str
    fn: Callable[[Mapping[str, Any]], Any]
    needs: tuple[str, ...]
    fmt: str = "num"
    key: str = ""
    note: str = ""  # caption note explaining the formula

    @property
    def name(self) -> str:
        return self.key or self.header


Column = Field | Static | Metric | Derived


@dataclass(frozen=True)
class Table:
    id: str
    title: str
    report: str  # which reference report it reproduces
    rows: tuple[Row, ...]
    columns: tuple[Column, ...]
    # (H, W) for Static columns; None = the run's evaluation input size on the dataset
    static_size: tuple[int, int] | None = None
    notes: tuple[str, ...] = ()
    # budget name -> overrides of that budget for this table's runs (e.g. fewer images at
    # `smoke`, so the whole set of tables stays CI-sized); `--set budget.*` applies on top
    budget_overrides: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    # the budget its accuracy and latency cells need (e.g. "full": models no CPU trains to a
    # meaningful accuracy); below it those cells are marked, never filled by a smaller
    # budget's numbers that would read like results, and their runs are not planned
    needs_budget: str | None = None

    def columns_for(self, options: Mapping[str, Any]) -> tuple[Column, ...]:
        return tuple(c for c in self.columns
                     if not (isinstance(c, Metric) and c.requires and not options.get(c.requires)))
