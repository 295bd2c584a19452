"""Where a model's time goes in OpenVINO's CPU plugin, per layer type and kernel: the
plugin's own counters (`PERF_COUNT`, `InferRequest.get_profiling_info`) over a number of
runs of one input. The kernel name says the precision a layer ran in (`brgconv_..._I8`
is an int8 convolution, `ref_f32` a scalar reference kernel in float), which is how
docs/runtimes.md ("ENet int8 in OpenVINO") found ENet's max-pooling in a reference kernel:

    python -m bench.runtimes.openvino_profile ARTIFACT.safetensors [ARTIFACT ...]
        [--size 180,240] [--runs 20] [--threads 1]

An artifact is any run's `model.safetensors`: a float model is exported as the OpenVINO
runtime exports it (`openvino_cpu.openvino_model`), an `nncf_ptq` artifact runs its IR.
"""

from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np


def layer_profile(ov_model, input_shape: tuple[int, ...], runs: int = 20,
                  threads: int = 1) -> dict[tuple[str, str], dict[str, float]]:
    """(layer type, kernel) -> {"layers": executed layers, "ms": mean ms per inference}."""
    import openvino as ov

    from bench.runtimes.openvino_cpu import RUNTIME

    ov_model.reshape({ov_model.inputs[0].any_name: list(input_shape)})
    config = {**RUNTIME.config(), "INFERENCE_NUM_THREADS": threads, "PERF_COUNT": "YES"}
    request = ov.Core().compile_model(ov_model, "CPU", config).create_infer_request()
    x = np.random.default_rng(0).standard_normal(input_shape).astype(np.float32)
    for _ in range(3):
        request.infer({0: x})
    total: dict[tuple[str, str], float] = defaultdict(float)
    layers: dict[tuple[str, str], set] = defaultdict(set)
    for _ in range(runs):
        request.infer({0: x})
        for info in request.get_profiling_info():
            if info.status != info.Status.EXECUTED:
                continue
            key = (info.node_type, info.exec_type)
            total[key] += info.real_time.total_seconds() * 1000.0
            layers[key].add(info.node_name)
    return {k: {"layers": len(layers[k]), "ms": total[k] / runs}
            for k in sorted(total, key=total.get, reverse=True)}


def artifact_model(path: Path, input_shape: tuple[int, ...]):
    """The `ov.Model` an artifact runs in OpenVINO."""
    import openvino as ov

    from bench.export import load_model
    from bench.runtimes.base import RuntimeModule
    from bench.runtimes.openvino_cpu import openvino_model

    model, _, _ = load_model(path)
    if isinstance(model, RuntimeModule):
        if model.runtime != "openvino":
            raise ValueError(f"{path}: a file of {model.runtime}, which OpenVINO does not load")
        files = model.files()
        weights = ov.Tensor(np.frombuffer(files["bin"], dtype=np.uint8).copy())
        return ov.Core().read_model(files["xml"].decode(), weights)
    return openvino_model(model, input_shape)


def render(profile: dict[tuple[str, str], dict[str, float]]) -> str:
    from tabulate import tabulate

    whole = sum(v["ms"] for v in profile.values()) or 1.0
    rows = [[t, kernel, v["layers"], f"{v['ms']:.3f}", f"{100 * v['ms'] / whole:.1f}"]
            for (t, kernel), v in profile.items()]
    rows.append(["total", "", sum(v["layers"] for v in profile.values()), f"{whole:.3f}",
                 "100.0"])
    return tabulate(rows, headers=["layer type", "kernel", "layers", "ms / inference", "%"],
                    tablefmt="github", disable_numparse=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.runtimes.openvino_profile",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("artifacts", nargs="+", help="run artifacts (model.safetensors)")
    p.add_argument("--size", default="180,240", help="input H,W")
    p.add_argument("--runs", type=int, default=20)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    try:
        h, w = (int(s) for s in args.size.split(","))
    except ValueError:
        h = w = 0
    missing = [a for a in args.artifacts if not Path(a).is_file()]
    if missing or min(h, w, args.runs, args.threads) < 1:
        print(f"segbench: error: need existing artifact files, --size H,W with H, W >= 1 and "
              f"--runs, --threads >= 1 (got missing {missing}, size {args.size!r}, "
              f"runs {args.runs}, threads {args.threads})", file=sys.stderr)
        return 2
    from bench.export import ArtifactError
    from bench.runtimes import MissingRuntime, require

    shape = (1, 3, h, w)
    try:
        require("openvino", "openvino")
        models = {a: artifact_model(Path(a), shape) for a in args.artifacts}
    except (MissingRuntime, ArtifactError, ValueError) as e:
        print(f"segbench: error: {e}", file=sys.stderr)
        return 2
    for a, ov_model in models.items():
        print(f"\n{a}, {h}x{w}, {args.threads} thread(s), {args.runs} runs\n")
        print(render(layer_profile(ov_model, shape, args.runs, args.threads)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
