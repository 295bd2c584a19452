"""What QAT and PTQ share: plan, fold, quantize with brevitas, calibrate, freeze, pack,
reload, and run on onnxruntime.

    compress:  trace the model once -> plan (methods/quant/plan.py) -> fold BatchNorms ->
               brevitas layers -> calibrate activation scales on training images
    fine-tune: QAT only, the harness's shared loop trains weights and scales
    finalize:  freeze to integer layers
    encode:    integer weights packed at their bit-width (`int_packed`), scales as float32
    rebuild:   the plan (artifact meta) recreates the frozen structure, the state loads
    predictor: onnxruntime session of the reloaded model, checked against the PyTorch
               quantized model (argmax agreement) before it is evaluated and timed; the
               runner times it interleaved with `baseline_predictor`, the float baseline
               in onnxruntime, for a like-for-like speedup
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from bench.artifact import EncodedTensor
from bench.atomic import atomic_write_bytes
from bench.config import ConfigError, Settings, setting
from bench.facts import MixedPrecision, OrtAgreement, OrtGraph, QuantLayers, QuantSites
from bench.method import Method
from methods.codecs.int_pack import encode_int_tensor
from methods.onnx.export import export_onnx
from methods.onnx.runtime import (
    LAYOUTS,
    OrtPredictor,
    argmax_agreement,
    count_ops,
)
from methods.quant.modules import FROZEN_LAYERS, ActQuant, qrange
from methods.quant.plan import (
    QuantConfig,
    QuantPlan,
    apply_frozen_structure,
    fold_batchnorms,
    plan_quantization,
)
from methods.quant.trace import trace_dataflow

# onnxruntime vs the PyTorch quantized model, fraction of pixels whose argmax agrees.
# The integer kernels and the float reference round a rare code differently, and at 4-bit
# activations such a flip moves a whole coarse step and spreads through deep nets, so W4A4
# ENet lands just under the 99 % target; a broken export lands far below the fatal floor.
TARGET_AGREEMENT = 0.99
MIN_AGREEMENT = 0.95
AGREEMENT_IMAGES = 8  # validation images the agreement is measured on
# onnxruntime's integer matmuls besides QLinearMatMul: DequantizeLinear-fed MatMuls whose
# output is not requantized (Linears on 3-D tokens, attention's Q·Kᵀ) become these
INTEGER_MATMULS = ("MatMulIntegerToFloat", "MatMulInteger")


@dataclass
class QuantMethodConfig(Settings):
    """The settings `qat` and `ptq` share (their Config subclasses this)."""

    # 2..8, or "auto": per-layer widths from {2, 4, 8} chosen under a size budget
    # (methods/quant/mixed.py; needs size_budget_mb or mean_weight_bits)
    weight_bits: int | str = setting(8, choices=(2, 3, 4, 5, 6, 7, 8, "auto"))
    # 4..8, or 32 for weight-only quantization
    act_bits: int = setting(8, choices=(4, 5, 6, 7, 8, 32))
    per_channel: bool = True  # per-output-channel weight scales (else per tensor)
    # first and last layers' weights and inputs; null: like the others
    first_last_bits: int | None = setting(8, ge=2, le=8)
    # training images for calibration; null: the budget's
    calibration_images: int | None = setting(None, ge=1)
    # onnxruntime integer-conv layout: auto (timed), nhwc, nchw
    ort_layout: str = setting("auto", choices=LAYOUTS)
    # weight_bits=auto: the artifact's tensor payload in MB (1e6 bytes; header not counted)
    size_budget_mb: float | None = setting(None, gt=0, new=True)
    # weight_bits=auto: the budget as mean bits per chosen weight (4: uniform 4-bit's bytes)
    mean_weight_bits: float | None = setting(None, ge=2, le=8, new=True)

    def __post_init__(self) -> None:
        super().__post_init__()
        w = self.weight_bits
        budgets = (self.size_budget_mb is not None) + (self.mean_weight_bits is not None)
        if w == "auto" and budgets != 1:
            raise ConfigError("weight_bits", w, "auto with exactly one of size_budget_mb "
                              "or mean_weight_bits set")
        if w != "auto" and budgets:
            field = "size_budget_mb" if self.size_budget_mb is not None else "mean_weight_bits"
            raise ConfigError(field, getattr(self, field), "null unless weight_bits=auto")

    @property
    def auto_bits(self) -> bool:
        return self.weight_bits == "auto"

    def quant_config(self) -> QuantConfig:
        # weight_bits=auto plans at 8 bits; mixed.py then sets each layer's width
        w = 8 if self.auto_bits else self.weight_bits
        return QuantConfig(w, self.act_bits, self.per_channel, self.first_last_bits)


class QuantMethod(Method):
    """Base of `qat` and `ptq` (not registered itself)."""

    runtime = "onnxruntime"

    def __init__(self, config: Any | None = None):
        super().__init__(config)
        self.plan: QuantPlan | None = None

    def describe(self) -> str:
        c = self.config
        a = "32" if c.act_bits == 32 else str(c.act_bits)
        w = c.weight_bits
        if c.auto_bits:
            w = "auto(" + (f"{c.size_budget_mb:g}MB" if c.size_budget_mb is not None
                           else f"{c.mean_weight_bits:g}b") + ")"
        return f"W{w}A{a}" + ("" if c.per_channel else " per-tensor")

    # hooks of `ptq`'s algorithms; `qat` keeps the defaults (calibration only)
    scale_stats = "percentile"

    def preprocess(self, ctx, model: nn.Module, trace) -> None:
        """Change the folded float model before it is quantized (equalization)."""

    def postprocess(self, ctx, model: nn.Module, images: torch.Tensor) -> None:
        """Change the calibrated brevitas model (GPTQ, AdaRound, bias correction)."""

    # -- compression -----------------------------------------------------------------
    def compress(self, ctx, model: nn.Module) -> nn.Module:
        from methods.quant.brevitas_layers import calibrate, to_brevitas  # slow import: only here

        n = self.config.calibration_images or ctx.budget.calibration_images
        images = ctx.calibration_images(n)
        model.eval()
        trace = trace_dataflow(model, images[:1].to(ctx.device))
        self.plan = plan_quantization(model, trace, self.config.quant_config())
        fold_batchnorms(model, self.plan.folds)
        self.preprocess(ctx, model, trace)
        if self.config.auto_bits:
            self._choose_bits(ctx, model, images)
        to_brevitas(model, self.plan, self.scale_stats)
        calibrate(model, images, ctx.budget.batch_size, ctx.device)
        self.postprocess(ctx, model, images)
        ctx.report(QuantLayers(
            quant_layers=len(self.plan.layers),
            quant_folded_batchnorms=len(self.plan.folds),
            quant_activation_quantizers=sum(
                (s.in_q is not None) + (s.out_q is not None) for s in self.plan.layers.values()
            ) + len(self.plan.acts) + len(self.plan.posts) + sum(
                (s.a_q is not None) + (s.b_q is not None) for s in self.plan.matmuls.values()),
            calibration_images=len(images),
        ))
        p = self.plan
        if p.posts or p.matmuls or p.float_matmuls or p.float_posts:
            ctx.report(QuantSites(output_quantizers=p.post_counts(model),
                                  float_outputs=dict(sorted(p.float_posts.items())),
                                  quantized_matmuls=len(p.matmuls),
                                  float_matmuls=p.float_matmuls))
        return model

    def _choose_bits(self, ctx, model: nn.Module, images: torch.Tensor) -> None:
        """weight_bits=auto: measure, allocate under the budget, write the widths into the
        plan, and record the table and the choice."""
        from methods.quant import mixed

        c = self.config
        plan = self._require_plan()
        pinned = set(plan.edges)  # first_last_bits keeps these at its width
        chosen = [n for n in plan.layers if n not in pinned]
        numel = {n: model.get_submodule(n).weight.numel() for n in chosen}
        fixed = mixed.fixed_bytes(model, plan)
        pinned_bytes = sum(mixed.code_bytes(model.get_submodule(n).weight.numel(),
                                            plan.layers[n].w_bits) for n in pinned)
        if c.size_budget_mb is not None:
            budget = int(c.size_budget_mb * 1e6) - fixed - pinned_bytes
        else:
            budget = sum(math.ceil(k * c.mean_weight_bits / 8) for k in numel.values())
        m = min(mixed.SENSITIVITY_IMAGES, len(images))
        sens = mixed.sensitivity(model, plan, chosen, images[:m], ctx.budget.batch_size)
        bits = mixed.allocate(sens, numel, budget)
        mixed.with_bits(plan, bits)
        codes = sum(mixed.code_bytes(numel[n], b) for n, b in bits.items())
        ctx.report(MixedPrecision(
            layer_bits={n: s.w_bits for n, s in plan.layers.items()},
            chosen_layers=len(chosen),
            code_budget_bytes=budget,
            chosen_code_bytes=codes,
            planned_payload_bytes=fixed + pinned_bytes + codes,
            sensitivity={n: {str(b): v for b, v in t.items()} for n, t in sens.items()},
            sensitivity_images=m,
        ))

    def finalize(self, ctx, model: nn.Module) -> nn.Module:
        from methods.quant.brevitas_layers import freeze

        model = freeze(model, self._require_plan())
        model.eval()
        return model

    def baseline_predictor(self, ctx, base: nn.Module) -> OrtPredictor:
        """The float baseline exported and run in onnxruntime with this row's threads: what
        the runner times this row against, interleaved (bench/latency.py), so the speedup
        is like for like and never against the eager PyTorch baseline."""
        shape = ctx.input_shape
        return OrtPredictor(base, torch.get_num_threads(), "auto",
                            (shape, export_onnx(base, shape)))

    # -- artifact --------------------------------------------------------------------
    def artifact_meta(self, model: nn.Module) -> dict[str, Any]:
        return {"plan": self._require_plan().to_meta()}

    def rebuild(self, model: nn.Module, meta: dict[str, Any]) -> nn.Module:
        self.plan = QuantPlan.from_meta(meta["plan"])
        return apply_frozen_structure(model, self.plan)

    def encode(self, ctx, model: nn.Module,
               tensors: dict[str, EncodedTensor]) -> dict[str, EncodedTensor]:
        out = dict(tensors)
        for name, m in model.named_modules():
            if isinstance(m, FROZEN_LAYERS):
                key = f"{name}.weight_int" if name else "weight_int"
                out[key] = encode_int_tensor(m.weight_int, m.w_bits, qrange(m.w_bits, True)[0])
        return out

    # -- runtime ---------------------------------------------------------------------
    def predictor(self, ctx, model: nn.Module, artifact_path):
        model.eval()
        onnx_bytes = export_onnx(model, ctx.input_shape)
        if artifact_path is not None:  # ship the graph that is evaluated next to the artifact
            atomic_write_bytes(Path(artifact_path).with_suffix(".onnx"), onnx_bytes)
        threads = torch.get_num_threads()
        predict = OrtPredictor(model, threads, self.config.ort_layout,
                               first=(ctx.input_shape, onnx_bytes))
        layout = predict.layouts[tuple(ctx.input_shape[-2:])]
        ops = count_ops(onnx_bytes, threads=threads, layout=layout)
        ctx.report(OrtGraph(
            ort_threads=threads,
            ort_layout=layout,
            ort_integer_ops={k: v for k, v in sorted(ops.items())
                             if k.startswith("QLinear") or k in INTEGER_MATMULS},
            ort_float_convs=ops.get("Conv", 0) + ops.get("ConvTranspose", 0),
        ))
        ds = ctx.dataset("val")
        images = torch.stack([ds[i][0] for i in range(min(AGREEMENT_IMAGES, len(ds)))])
        agree = argmax_agreement(lambda x: model(x.to(_device(model))), predict, images)
        ctx.report(OrtAgreement(ort_argmax_agreement=agree,
                                ort_agreement_target_met=agree >= TARGET_AGREEMENT))
        if agree < MIN_AGREEMENT:
            raise RuntimeError(
                f"onnxruntime's predictions agree with the PyTorch quantized model on only "
                f"{agree:.2%} of pixels (need >= {MIN_AGREEMENT:.0%}); the export is wrong")
        if agree < TARGET_AGREEMENT:
            print(f"warning: {self.name} {self.describe()}: onnxruntime agrees with the "
                  f"PyTorch quantized model on {agree:.2%} of pixels, under the "
                  f"{TARGET_AGREEMENT:.0%} target (rounding ties at low bit-widths)",
                  file=sys.stderr)
        return predict

    # -- conformance -----------------------------------------------------------------
    def check(self, model: nn.Module, meta: dict[str, Any]) -> list[str]:
        problems = []
        plan = QuantPlan.from_meta(meta["plan"])
        for name, spec in plan.layers.items():
            try:
                m = model.get_submodule(name)
            except AttributeError:
                problems.append(f"{name}: missing")
                continue
            if not isinstance(m, FROZEN_LAYERS):
                problems.append(f"{name}: not a quantized layer ({type(m).__name__})")
                continue
            problems += _check_layer(name, m, spec.w_bits)
        for name, m in model.named_modules():
            if isinstance(m, ActQuant) and not (torch.isfinite(m.scale) and m.scale > 0):
                problems.append(f"{name}: activation scale {float(m.scale)} is not positive")
        return problems

    def _require_plan(self) -> QuantPlan:
        if self.plan is None:
            raise RuntimeError(f"{self.name}: no quantization plan (compress or rebuild first)")
        return self.plan


def _check_layer(name: str, m: nn.Module, bits: int) -> list[str]:
    """Bit-width on the stored codes: in range, and at most 2**bits distinct values per
    output channel (per tensor when per-tensor)."""
    out = []
    codes = m.weight_int.detach().to(torch.int16)
    lo, hi = qrange(bits, True)
    if m.w_bits != bits:
        out.append(f"{name}: layer says {m.w_bits} bits, plan says {bits}")
    if int(codes.min()) < lo or int(codes.max()) > hi:
        out.append(f"{name}: weight codes span [{int(codes.min())}, {int(codes.max())}], "
                   f"outside {bits}-bit [{lo}, {hi}]")
    per = codes.movedim(m.weight_axis, 0).reshape(codes.shape[m.weight_axis], -1) \
        if m.per_channel else codes.reshape(1, -1)
    worst = max(int(torch.unique(row).numel()) for row in per)
    if worst > 2**bits:
        out.append(f"{name}: {worst} distinct weight values in a channel > 2**{bits}")
    s = m.weight_scale
    if not bool(torch.isfinite(s).all() and (s > 0).all()):
        out.append(f"{name}: weight scales must be finite and positive")
    return out


def _device(model: nn.Module) -> torch.device:
    p = next(iter(model.parameters()), None)
    return p.device if p is not None else torch.device("cpu")
