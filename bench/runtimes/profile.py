"""Where an ONNX model's time goes in onnxruntime, per operator type: onnxruntime's own
profiler (`SessionOptions.enable_profiling`) over a number of runs of one input, read back
from the JSON trace it writes. What docs/runtimes.md's ENet profile comes from:

    python -m bench.runtimes.profile model.onnx [--runs 30] [--layout nhwc|nchw]
        [--threads 1]

prints, per operator type as the optimised graph runs it (QLinearConv, MaxUnpool's
ScatterElements, PRelu, the QuantizeLinear/DequantizeLinear left between float and integer
islands, the layout Transposes), the number of nodes, milliseconds per inference and the
share of the total.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

import numpy as np


def op_profile(onnx_bytes: bytes, input_shape: tuple[int, ...], runs: int = 30,
               layout: str = "nhwc", threads: int = 1) -> dict[str, dict[str, float]]:
    """op type -> {"nodes": distinct nodes, "ms": mean milliseconds per inference}."""
    from methods.onnx.export import INPUT_NAME
    from methods.onnx.runtime import build_session

    with tempfile.TemporaryDirectory() as d:
        sess = build_session(onnx_bytes, threads, layout, enable_profiling=True,
                             profile_file_prefix=os.path.join(d, "ort"))
        x = np.random.default_rng(0).standard_normal(input_shape).astype(np.float32)
        for _ in range(3):  # warm-up rounds are in the trace too: counted apart below
            sess.run(None, {INPUT_NAME: x})
        for _ in range(runs):
            sess.run(None, {INPUT_NAME: x})
        trace = json.loads(Path(sess.end_profiling()).read_text())
    total: dict[str, float] = defaultdict(float)
    nodes: dict[str, set] = defaultdict(set)
    per_node_calls: dict[str, int] = defaultdict(int)
    for ev in trace:
        if ev.get("cat") != "Node" or not ev.get("name", "").endswith("_kernel_time"):
            continue
        op = ev.get("args", {}).get("op_name", "?")
        name = ev["name"][: -len("_kernel_time")]
        per_node_calls[name] += 1
        if per_node_calls[name] <= 3:  # the warm-up calls
            continue
        total[op] += ev["dur"] / 1000.0  # microseconds -> ms
        nodes[op].add(name)
    return {op: {"nodes": len(nodes[op]), "ms": total[op] / runs}
            for op in sorted(total, key=total.get, reverse=True)}


def render(profile: dict[str, dict[str, float]]) -> str:
    from tabulate import tabulate

    whole = sum(v["ms"] for v in profile.values()) or 1.0
    rows = [[op, v["nodes"], f"{v['ms']:.3f}", f"{100 * v['ms'] / whole:.1f}"]
            for op, v in profile.items()]
    rows.append(["total", sum(v["nodes"] for v in profile.values()), f"{whole:.3f}", "100.0"])
    return tabulate(rows, headers=["operator", "nodes", "ms / inference", "%"],
                    tablefmt="github", disable_numparse=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.runtimes.profile",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("onnx", help="an ONNX file (e.g. the .onnx beside a qat/ptq artifact)")
    p.add_argument("--runs", type=int, default=30)
    p.add_argument("--layout", default="nhwc", choices=["nhwc", "nchw"])
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    path = Path(args.onnx)
    if not path.is_file() or args.runs < 1 or args.threads < 1:
        print(f"segbench: error: need an existing ONNX file and --runs, --threads >= 1 "
              f"(got {args.onnx!r}, {args.runs}, {args.threads})", file=sys.stderr)
        return 2
    import onnx

    model = onnx.load(str(path))
    dims = [d.dim_value or 1 for d in model.graph.input[0].type.tensor_type.shape.dim]
    print(render(op_profile(path.read_bytes(), tuple(dims), args.runs, args.layout,
                            args.threads)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
