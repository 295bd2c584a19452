"""How much of structured pruning's saved arithmetic becomes time, per deployment runtime:
a zoo model (untrained: timing depends on shapes, not weights) pruned by `prune_structured`
at `--ratio` with each `--round-to`, every variant exported to each runtime with the
harness's own wrappers and timed interleaved with the unpruned baseline in one process
(`bench.latency.paired_latency`), denormals flushed as the runner does. Efficiency is the
median paired speedup divided by the MAdds reduction (bench/complexity.py):

    python -m methods.pruning.efficiency --model enet --size 180,240 [--size 128,128]
        [--ratio 0.5] [--round-to 1,8,16] [--runtimes torch,onnxruntime,openvino,executorch]
        [--rounds 30] [--threads 1]

One table row per (size, round_to, runtime): speedup median (IQR of the per-round
ratios), MAdds reduction, efficiency. docs/pruning.md ("Channel counts and runtime
efficiency") holds a measured table.
"""

from __future__ import annotations

import argparse
import sys
from types import SimpleNamespace

import torch


def _ctx(model_name: str, input_shape: tuple[int, ...], num_classes: int):
    """The few RunContext fields `StructuredPruning.compress` reads at one step."""
    budget = SimpleNamespace(finetune_epochs=0, lr=0.0, finetune_lr_scale=1.0)
    return SimpleNamespace(input_shape=input_shape, num_classes=num_classes, budget=budget,
                           spec=SimpleNamespace(model=model_name), report=lambda fact: None)


def pruned(model_name: str, num_classes: int, input_shape, ratio: float, round_to: int):
    from bench.method import expand_methods
    from models import create_model

    torch.manual_seed(0)
    model = create_model(model_name, num_classes=num_classes).eval()
    if ratio == 0:
        return model
    (stage,) = expand_methods("prune_structured", {"ratio": ratio,
                                                   "round_to": round_to})[0].stages()
    return stage.method.compress(_ctx(model_name, input_shape, num_classes), model).eval()


def measure(model_name: str, size: tuple[int, int], ratio: float, round_tos: list[int],
            runtimes: list[str], rounds: int, num_classes: int = 11) -> list[dict]:
    from bench.complexity import count_madds
    from bench.latency import paired_latency, ratio_summary
    from bench.runtimes import get_runtime

    shape = (1, 3, *size)
    models = {"base": pruned(model_name, num_classes, shape, 0.0, 1)}
    for n in round_tos:
        models[f"round_to={n}"] = pruned(model_name, num_classes, shape, ratio, n)
    madds = {k: count_madds(m, shape).madds for k, m in models.items()}
    rows = []
    for rt in runtimes:
        runtime = get_runtime(rt)
        preds = {k: runtime.compile(m, shape).predict for k, m in models.items()}
        timed = paired_latency(preds, shape, runs=rounds, warmup=5)
        base = timed["base"]["times_ms"]
        for k in models:
            if k == "base":
                continue
            s = ratio_summary(base, timed[k]["times_ms"])
            reduction = madds["base"] / madds[k]
            rows.append({"model": model_name, "size": "x".join(map(str, size)), "variant": k,
                         "runtime": rt, "speedup": s["median"], "iqr": s["iqr"],
                         "madds_x": reduction, "efficiency": s["median"] / reduction,
                         "base_ms": timed["base"]["median_ms"]})
    return rows


def main(argv: list[str] | None = None) -> int:
    from bench.numerics import flush_denormals
    from bench.runtimes import NAMES, parse_runtimes

    ap = argparse.ArgumentParser(prog="python -m methods.pruning.efficiency",
                                 description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--size", action="append", default=None, help="H,W (repeatable)")
    ap.add_argument("--ratio", type=float, default=0.5)
    ap.add_argument("--round-to", default="1,8,16")
    ap.add_argument("--runtimes", default=",".join(NAMES))
    ap.add_argument("--rounds", type=int, default=30)
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args(argv)
    try:
        sizes = [tuple(int(v) for v in s.split(",")) for s in (a.size or ["180,240"])]
        round_tos = [int(v) for v in a.round_to.split(",")]
        if any(len(s) != 2 or min(s) < 16 for s in sizes) or min(round_tos) < 1:
            raise ValueError
    except ValueError:
        print("efficiency: --size must be H,W (each >= 16) and --round-to integers >= 1",
              file=sys.stderr)
        return 2
    runtimes = parse_runtimes(a.runtimes)
    flush_denormals()
    torch.set_num_threads(a.threads)
    print("| size | variant | runtime | speedup (IQR) | MAdds × | efficiency | base ms |")
    print("|---|---|---|---|---|---|---|")
    for size in sizes:
        for r in measure(a.model, size, a.ratio, round_tos, runtimes, a.rounds):
            print(f"| {r['size']} | {r['variant']} | {r['runtime']} | {r['speedup']:.2f} "
                  f"({r['iqr']:.2f}) | {r['madds_x']:.2f} | {r['efficiency']:.2f} | "
                  f"{r['base_ms']:.1f} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
