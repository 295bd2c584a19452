"""The deployment pass of a run: the row exported to every runtime the grid names, each
timed against the trained baseline exported to the same runtime, in the same process,
interleaved (bench/latency.py), and checked against the PyTorch model it came from.

What a row can run in follows from what it is:

* a float PyTorch model (pruned, distilled, ...) exports to every runtime;
* a model whose own runtime is not PyTorch and that is still a PyTorch module (brevitas'
  integer layers, shipped as QDQ ONNX) is timed only where its integer form survives the
  export (onnxruntime; OpenVINO when it builds integer convolutions from the QDQ pairs):
  timing its float emulation elsewhere would compare nothing a user deploys;
* a runtime's own file (NNCF's IR, PT2E's .pte: a `RuntimeModule`) runs only there.

A runtime that cannot take the row is recorded as skipped with the reason; one whose export
fails is recorded with the error, and the run goes on: the row's own figures stand.
"""

from __future__ import annotations

import sys
import time
from collections import OrderedDict
from typing import TYPE_CHECKING

import torch
from torch import nn

from bench.facts import DeployLatency
from bench.latency import measure_paired
from bench.runtimes import get_runtime
from bench.runtimes.base import FP32, Compiled, RuntimeModule

if TYPE_CHECKING:
    from bench.context import RunContext

AGREEMENT_IMAGES = 8  # validation images the agreement is measured on
# runtimes that read the zoo's QDQ ONNX, where an integer model can keep its integer form
READS_QDQ = ("onnxruntime", "openvino")

# the baseline compiled per (baseline run, runtime, input shape, threads): every run of a
# grid in one process shares it (an ExecuTorch lowering of ENet takes a minute)
_BASELINES: OrderedDict[tuple, Compiled] = OrderedDict()
_KEEP = 8


def skip_reason(model: nn.Module, row_runtime: str, runtime: str) -> str | None:
    """Why `runtime` cannot run this row, or None."""
    if isinstance(model, RuntimeModule):
        if runtime != model.runtime:
            return f"the artifact is a file of {model.runtime}, which {runtime} does not load"
        return None
    if row_runtime not in ("torch", runtime) and runtime not in READS_QDQ:
        return (f"the row's integer model ({row_runtime}) would run in {runtime} as float "
                f"emulation; nothing to deploy")
    return None


def baseline_compiled(ctx: RunContext, runtime: str) -> Compiled:
    base, info = ctx.baseline()
    key = (info.get("run_id"), info.get("sha256"), runtime, tuple(ctx.input_shape),
           torch.get_num_threads())
    if key not in _BASELINES:
        base.eval()
        _BASELINES[key] = get_runtime(runtime).compile(base, ctx.input_shape)
        while len(_BASELINES) > _KEEP:
            _BASELINES.popitem(last=False)
    return _BASELINES[key]


def agreement_images(ctx: RunContext) -> torch.Tensor:
    ds = ctx.dataset(ctx.spec.eval_split)
    shape = tuple(ctx.input_shape[1:])
    imgs = [ds[i][0] for i in range(min(AGREEMENT_IMAGES, len(ds)))]
    return torch.stack([x for x in imgs if tuple(x.shape) == shape] or imgs[:1])


@torch.no_grad()
def argmax_agreement(a, b, images: torch.Tensor) -> float:
    """Fraction of pixels where two predictors' argmax classes agree (one image at a time,
    so batch-1 programs need no second export)."""
    same = total = 0
    for i in range(len(images)):
        x = images[i : i + 1]
        pa, pb = a(x).argmax(1).cpu(), b(x).argmax(1).cpu()
        same += int((pa == pb).sum())
        total += pa.numel()
    return same / max(total, 1)


def time_runtimes(ctx: RunContext, model: nn.Module, row_runtime: str) -> DeployLatency:
    """The row in every runtime of `ctx.spec.runtimes`; reported with `ctx.report`."""
    base, _ = ctx.baseline()
    base.eval()
    images = agreement_images(ctx)
    # the PyTorch model a runtime's outputs are checked against: the row's own module, or
    # for a runtime file (which has no PyTorch twin) the float baseline it was made from
    reference, ref_name = (base, "baseline (float PyTorch)") \
        if isinstance(model, RuntimeModule) else (model, "row (PyTorch)")
    out: dict[str, dict] = {}
    for name in ctx.spec.runtimes:
        reason = skip_reason(model, row_runtime, name)
        if reason:
            out[name] = {"skipped": reason}
            continue
        t0 = time.perf_counter()
        try:
            row = get_runtime(name).compile(model, ctx.input_shape)
            if row_runtime not in ("torch", name) and row.precision == FP32:
                out[name] = {"skipped": f"{name} runs the row's integer model in float"}
                continue
            base_c = baseline_compiled(ctx, name)
            agree = argmax_agreement(reference, row.predict, images)
            lat = measure_paired(row.predict, base_c.predict, ctx.input_shape, ctx.device,
                                 runs=ctx.budget.latency_runs, warmup=ctx.budget.latency_warmup)
        except Exception as e:  # noqa: BLE001 - one runtime failing leaves the row standing
            msg = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"[:300]
            print(f"warning: {ctx.spec.label} in {name}: {msg}", file=sys.stderr)
            out[name] = {"error": msg}
            continue
        out[name] = {
            "precision": row.precision, "baseline_precision": base_c.precision,
            "latency_ms": lat["latency_ms"], "latency_iqr_ms": lat["latency_iqr_ms"],
            "baseline_latency_ms": lat["baseline_latency_ms"], "speedup": lat["speedup"],
            "speedup_iqr": lat["speedup_iqr"], "speedup_p2_5": lat["speedup_p2_5"],
            "speedup_p97_5": lat["speedup_p97_5"], "noisy": lat["latency_noisy"],
            "agreement": agree, "agreement_images": len(images), "reference": ref_name,
            "detail": {**row.detail, "seconds": round(time.perf_counter() - t0, 2)},
        }
    fact = DeployLatency(threads=torch.get_num_threads(), runtimes=out)
    ctx.report(fact)
    return fact
