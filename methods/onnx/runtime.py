"""onnxruntime on the CPU as the deployment runtime: sessions, a predictor the harness can
evaluate and time, like-for-like latency against the float model, and an argmax check.

Sessions use every graph optimisation (ORT_ENABLE_ALL: QDQ fusion into QLinearConv and
friends, the int8 NHWC layout, NCHWc for float convs) and as many intra-op threads as
torch has (the run's `--threads`), one inter-op thread, sequential execution, so the
runtime uses exactly the cores the run reports.
"""

from __future__ import annotations

from collections.abc import Callable

import onnxruntime as ort
import torch
from torch import nn

from bench.latency import paired_latency
from methods.onnx.export import INPUT_NAME, export_onnx

LAYOUTS = ("auto", "nhwc", "nchw")


def build_session(onnx_bytes: bytes, threads: int | None = None, layout: str = "nhwc",
                  **options) -> ort.InferenceSession:
    """Every onnxruntime session segbench builds (timing, op counts, profiles): all graph
    optimisations, sequential, errors only, denormals flushed in its threads and (without
    the option, cleared) the calling one (bench/numerics.py). `layout` nhwc lets
    onnxruntime run integer convs channels-last (its default); nchw disables that pass (its
    NhwcTransformer). `options`: further SessionOptions attributes (e.g. profiling)."""
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.intra_op_num_threads = threads or torch.get_num_threads()
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.log_severity_level = 3  # errors only
    so.add_session_config_entry("session.set_denormal_as_zero", "1")
    for key, value in options.items():
        setattr(so, key, value)
    disabled = ["NhwcTransformer"] if layout == "nchw" else []
    return ort.InferenceSession(onnx_bytes, so, providers=["CPUExecutionProvider"],
                                disabled_optimizers=disabled)


def make_session(onnx_bytes: bytes, threads: int | None = None,
                 layout: str = "nhwc") -> ort.InferenceSession:
    """A session to run and time (`build_session`)."""
    return build_session(onnx_bytes, threads, layout)


def tuned_session(onnx_bytes: bytes, input_shape: tuple[int, ...], threads: int | None = None,
                  layout: str = "auto") -> tuple[ort.InferenceSession, str]:
    """A session and its integer-conv layout. `auto` times both layouts on one input and
    keeps the faster: channels-last integer convs win when they run back to back (U-Net)
    and lose when float ops sit between them (ENet's PReLUs), because every switch costs
    a transpose. Both layouts compute bit-identical outputs, so the choice moves latency,
    never predictions. Float graphs have no integer convs and skip the timing."""
    if layout not in LAYOUTS:
        raise ValueError(f"unknown onnxruntime layout {layout!r}; valid: {', '.join(LAYOUTS)}")
    if layout != "auto":
        return make_session(onnx_bytes, threads, layout), layout
    if b"QuantizeLinear" not in onnx_bytes:
        return make_session(onnx_bytes, threads, "nhwc"), "nhwc"
    sessions = {k: make_session(onnx_bytes, threads, k) for k in ("nhwc", "nchw")}
    x = torch.randn(1, *input_shape[1:], generator=torch.Generator().manual_seed(0))
    lat = paired_latency({k: _runner(s) for k, s in sessions.items()}, tuple(x.shape),
                         runs=TUNE_RUNS, warmup=2)
    best = min(lat, key=lambda k: lat[k]["median_ms"])
    return sessions[best], best


TUNE_RUNS = 7


def _runner(session: ort.InferenceSession) -> Callable[[torch.Tensor], object]:
    return lambda x: session.run(None, {INPUT_NAME: x.numpy()})


class OrtPredictor:
    """images (N, 3, H, W) tensor -> logits tensor on the images' device, run by
    onnxruntime. The model is exported once per input size (H and W are static in the
    graph, the batch is not), so it works for datasets with varying image sizes."""

    def __init__(self, model: nn.Module, threads: int | None = None, layout: str = "auto",
                 first: tuple[tuple[int, ...], bytes] | None = None):
        self.model = model
        self.threads = threads
        self.layout = layout
        self.sessions: dict[tuple[int, int], ort.InferenceSession] = {}
        self.layouts: dict[tuple[int, int], str] = {}  # the layout each size runs with
        if first is not None:
            self._add(*first)

    def _add(self, shape: tuple[int, ...], data: bytes) -> ort.InferenceSession:
        key = tuple(shape[-2:])
        self.sessions[key], self.layouts[key] = tuned_session(data, shape, self.threads,
                                                              self.layout)
        return self.sessions[key]

    def session(self, shape: tuple[int, ...]) -> ort.InferenceSession:
        key = tuple(shape[-2:])
        if key in self.sessions:
            return self.sessions[key]
        one = (1, *shape[1:])
        return self._add(one, export_onnx(self.model, one))

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        x = images.detach().to("cpu", torch.float32).contiguous().numpy()
        out = self.session(tuple(images.shape)).run(None, {INPUT_NAME: x})[0]
        return torch.from_numpy(out).to(images.device)


@torch.no_grad()
def argmax_agreement(a: Callable[[torch.Tensor], torch.Tensor],
                     b: Callable[[torch.Tensor], torch.Tensor], images: torch.Tensor,
                     batch_size: int = 8) -> float:
    """Fraction of pixels where two predictors' argmax classes agree."""
    same = total = 0
    for i in range(0, len(images), batch_size):
        x = images[i : i + batch_size]
        pa, pb = a(x).argmax(1), b(x).argmax(1).to(x.device)
        same += int((pa == pb).sum())
        total += pa.numel()
    return same / max(total, 1)


def count_ops(onnx_bytes: bytes, optimized: bool = True, threads: int | None = 1,
              layout: str = "nhwc") -> dict[str, int]:
    """Op types of the graph as onnxruntime runs it (after its optimisations) or as
    exported; what the tests use to see integer kernels."""
    import collections
    import os
    import tempfile

    import onnx

    if not optimized:
        model = onnx.load_from_string(onnx_bytes)
    else:
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "optimized.onnx")
            build_session(onnx_bytes, threads or 1, layout, optimized_model_filepath=path)
            model = onnx.load(path)
    return dict(collections.Counter(n.op_type for n in model.graph.node))
