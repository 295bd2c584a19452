"""Frozen integer layers: a quantized model as it ships, in the artifact and in ONNX.

Brevitas trains and calibrates the quantizers (methods/quant/brevitas_layers.py); once training is
over, these modules hold the result as a deployment runtime needs it: integer weight codes
(int8 storage, values within the layer's bit-width), per-channel or per-tensor weight
scales, and per-tensor activation scales with zero point 0. In PyTorch they compute the
reference semantics of a QDQ graph (quantize, clamp, dequantize, then float arithmetic);
under `torch.onnx.export` they emit exactly that as ONNX QuantizeLinear/DequantizeLinear
nodes, which onnxruntime fuses into integer kernels (QLinearConv and friends).

Frozen layers subclass the torch layer they replace, with `weight` a property that
dequantizes the integer codes, so the harness's parameter and MAdds counters see an
ordinary convolution, and `weight_int` an int8 parameter (no gradient) so the parameter
count stays that of the float model.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn


def qrange(bits: int, signed: bool, narrow: bool = False) -> tuple[int, int]:
    """Integer range of a `bits`-bit code; `narrow` drops the most negative value
    (symmetric weights: [-127, 127] at 8 bits), as brevitas's weight quantizers do."""
    if signed:
        return -(2 ** (bits - 1)) + int(narrow), 2 ** (bits - 1) - 1
    return 0, 2**bits - 1


@dataclass(frozen=True)
class ActSpec:
    """One activation quantizer: per-tensor scale, zero point 0, `bits` wide."""

    bits: int
    signed: bool

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> ActSpec | None:
        return None if d is None else cls(checked_bits(d["bits"]), bool(d["signed"]))


def checked_bits(bits: Any) -> int:
    """A stored bit width, refused unless in 2..8 (what QuantConfig allows): `qrange`
    computes 2**bits, so a crafted 10**12 would never finish."""
    if isinstance(bits, bool) or not isinstance(bits, int) or not 2 <= bits <= 8:
        raise ValueError(f"bit width {bits!r:.40} is not an integer in 2..8")
    return bits


class _FakeQuant(torch.autograd.Function):
    """clamp(round(x / s), qmin, qmax) * s; exports as QuantizeLinear [-> Clip] ->
    DequantizeLinear on a uint8 container (signed codes offset by a zero point of 2**(b-1),
    the same values). uint8 is what onnxruntime's x86 integer kernels take; codes narrower
    than 8 bits are clipped in the integer domain (brevitas's QCDQ form), which
    onnxruntime runs as a cheap uint8 Clip between the fused integer ops."""

    @staticmethod
    def forward(ctx, x, scale, qmin: int, qmax: int, signed: bool):
        return torch.clamp(torch.round(x / scale), qmin, qmax) * scale

    @staticmethod
    def symbolic(g, x, scale, qmin: int, qmax: int, signed: bool):
        offset = -qmin  # maps [qmin, qmax] onto [0, qmax - qmin]
        zp = g.op("Constant", value_t=torch.tensor(offset, dtype=torch.uint8))
        q = g.op("QuantizeLinear", x, scale, zp)
        if qmax - qmin != 255:
            lo = g.op("Constant", value_t=torch.tensor(0, dtype=torch.uint8))
            hi = g.op("Constant", value_t=torch.tensor(qmax - qmin, dtype=torch.uint8))
            q = g.op("Clip", q, lo, hi)
        return g.op("DequantizeLinear", q, scale, zp)


class _DequantWeight(torch.autograd.Function):
    """w_int * scale (per channel along `axis`, or per tensor); exports as one
    DequantizeLinear on the int8 initializer, the weight form QLinearConv fusion wants."""

    @staticmethod
    def forward(ctx, w_int, scale, axis: int):
        if scale.dim() == 0:
            return w_int.to(scale.dtype) * scale
        shape = [1] * w_int.dim()
        shape[axis] = -1
        return w_int.to(scale.dtype) * scale.reshape(shape)

    @staticmethod
    def symbolic(g, w_int, scale, axis: int):
        from torch.onnx import symbolic_helper

        n = symbolic_helper._get_tensor_sizes(scale)
        if not n:
            zp = g.op("Constant", value_t=torch.tensor(0, dtype=torch.int8))
            return g.op("DequantizeLinear", w_int, scale, zp)
        zp = g.op("Constant", value_t=torch.zeros(n[0], dtype=torch.int8))
        return g.op("DequantizeLinear", w_int, scale, zp, axis_i=axis)


class ActQuant(nn.Module):
    """Per-tensor activation quantizer with a fixed scale. Unsigned codes clamp negative
    inputs to zero, so an unsigned ActQuant that replaces a ReLU computes ReLU too."""

    def __init__(self, spec: ActSpec):
        super().__init__()
        self.bits, self.signed = spec.bits, spec.signed
        self.qmin, self.qmax = qrange(spec.bits, spec.signed)
        self.register_buffer("scale", torch.ones(()))

    @property
    def spec(self) -> ActSpec:
        return ActSpec(self.bits, self.signed)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _FakeQuant.apply(x, self.scale, self.qmin, self.qmax, self.signed)

    def extra_repr(self) -> str:
        return f"bits={self.bits}, signed={self.signed}"


class PostQuant(nn.Module):
    """A float module followed by the quantizer of its output (PReLU, LayerNorm, GELU,
    Softmax: methods/quant/plan.py says why). `quant` is a brevitas QuantIdentity while
    training and calibrating, an `ActQuant` once frozen; `module` keeps its parameters."""

    def __init__(self, module: nn.Module, quant: nn.Module):
        super().__init__()
        self.module, self.quant = module, quant

    def forward(self, *args, **kwargs):
        return self.quant(self.module(*args, **kwargs))


@dataclass(frozen=True)
class LayerSpec:
    """How one conv / transposed conv / linear layer is quantized."""

    w_bits: int
    per_channel: bool
    in_q: ActSpec | None = None  # quantizer on the layer's input (None: input already is)
    out_q: ActSpec | None = None  # quantizer on the layer's output (None: float output)

    def to_dict(self) -> dict[str, Any]:
        return {"w_bits": self.w_bits, "per_channel": self.per_channel,
                "in_q": self.in_q.to_dict() if self.in_q else None,
                "out_q": self.out_q.to_dict() if self.out_q else None}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> LayerSpec:
        return cls(checked_bits(d["w_bits"]), bool(d["per_channel"]),
                   ActSpec.from_dict(d.get("in_q")),
                   ActSpec.from_dict(d.get("out_q")))


@dataclass(frozen=True)
class MatMulSpec:
    """The quantizers on an activation x activation matmul's operands (a @ b). An operand's
    spec is None when it comes straight from a quantizer (the product reads its codes);
    with a tie (`"out:<layer>"`, `"post:<module>"`...) it lies on that quantizer's grid
    through reshapes and transposes, and the frozen model requantizes it at that very
    scale (exact) so the runtime sees DequantizeLinear right at the matmul."""

    a_q: ActSpec | None
    b_q: ActSpec | None
    a_tie: str | None = None
    b_tie: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"a_q": self.a_q.to_dict() if self.a_q else None,
                "b_q": self.b_q.to_dict() if self.b_q else None,
                "a_tie": self.a_tie, "b_tie": self.b_tie}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> MatMulSpec:
        return cls(ActSpec.from_dict(d.get("a_q")), ActSpec.from_dict(d.get("b_q")),
                   d.get("a_tie"), d.get("b_tie"))


class QuantMatMul(nn.Module):
    """A `models._common.MatMul` with a quantizer on each operand (None: already
    quantized), applied after `b`'s transpose so the quantized tensor is what the product
    reads. The quantizers are brevitas QuantIdentity while training, `ActQuant` once
    frozen."""

    def __init__(self, matmul: nn.Module, a_q: nn.Module | None, b_q: nn.Module | None):
        super().__init__()
        self.transpose_b = bool(matmul.transpose_b)
        self.a_q, self.b_q = a_q, b_q

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        if self.transpose_b:
            b = b.transpose(-2, -1)
        if self.a_q is not None:
            a = self.a_q(a)
        if self.b_q is not None:
            b = self.b_q(b)
        return a @ b


class _FrozenLayer:
    """Shared part of the frozen conv/linear layers (a mixin over the torch layer)."""

    weight_axis = 0  # output-channel axis of the weight tensor
    # export the weight as int8 + DequantizeLinear (what integer-kernel fusion needs); a
    # layer onnxruntime has no integer kernel for exports the same values as a float
    # constant instead, so it runs with prepacked weights rather than dequantizing per call
    export_int_weight = True

    def _freeze_init(self, spec: LayerSpec) -> None:
        w = self.weight
        del self.weight  # replaced by the `weight` property below
        self.w_bits, self.per_channel = spec.w_bits, spec.per_channel
        self.weight_int = nn.Parameter(torch.zeros(w.shape, dtype=torch.int8),
                                       requires_grad=False)
        n = w.shape[self.weight_axis] if spec.per_channel else None
        self.register_buffer("weight_scale", torch.ones(n) if n else torch.ones(()))
        self.in_q = ActQuant(spec.in_q) if spec.in_q else None
        self.out_q = ActQuant(spec.out_q) if spec.out_q else None

    @property
    def weight(self) -> torch.Tensor:
        params = self._parameters
        if "weight_int" in params:
            if self.export_int_weight:
                return _DequantWeight.apply(params["weight_int"], self.weight_scale,
                                            self.weight_axis)
            return _DequantWeight.forward(None, params["weight_int"], self.weight_scale,
                                          self.weight_axis)
        if "weight" in params:  # inside the torch layer's own __init__, before freezing
            return params["weight"]
        raise AttributeError("weight")

    @property
    def spec(self) -> LayerSpec:
        return LayerSpec(self.w_bits, self.per_channel,
                         self.in_q.spec if self.in_q is not None else None,
                         self.out_q.spec if self.out_q is not None else None)

    def _quantized_forward(self, x: torch.Tensor, forward) -> torch.Tensor:
        if self.in_q is not None:
            x = self.in_q(x)
        if self.export_int_weight and not torch.onnx.is_in_onnx_export():
            y = self._forward64(x).to(x.dtype)
        else:
            y = forward(x)
        return self.out_q(y) if self.out_q is not None else y

    def _weight64(self) -> torch.Tensor:
        return _DequantWeight.forward(None, self.weight_int, self.weight_scale.double(),
                                      self.weight_axis)

    def _forward64(self, x: torch.Tensor) -> torch.Tensor:
        """The layer in float64. An integer kernel sums exactly; float32 sums of thousands
        of products do not, and a code rounded the other way by that noise changes what
        follows (at 4 bits by a whole coarse step), so the reference sums in float64: on
        W4A4 U-Net codes that differ from onnxruntime's drop from 1.2 % to 0.8 % by the
        fifth block."""
        raise NotImplementedError


class FrozenConv2d(_FrozenLayer, nn.Conv2d):
    def __init__(self, like: nn.Conv2d, spec: LayerSpec):
        nn.Conv2d.__init__(self, like.in_channels, like.out_channels, like.kernel_size,
                           stride=like.stride, padding=like.padding, dilation=like.dilation,
                           groups=like.groups, bias=like.bias is not None,
                           padding_mode=like.padding_mode, device="meta")
        self.to_empty(device="cpu")
        self._freeze_init(spec)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._quantized_forward(x, super().forward)

    def _forward64(self, x: torch.Tensor) -> torch.Tensor:
        b = self.bias.double() if self.bias is not None else None
        return self._conv_forward(x.double(), self._weight64(), b)


class FrozenConvTranspose2d(_FrozenLayer, nn.ConvTranspose2d):
    # ConvTranspose weights are (in, out / groups, kh, kw); as in brevitas, "per channel"
    # means per index along axis 1 (the output channel when groups == 1)
    weight_axis = 1
    export_int_weight = False  # onnxruntime's CPU provider has no QDQ ConvTranspose fusion

    def __init__(self, like: nn.ConvTranspose2d, spec: LayerSpec):
        nn.ConvTranspose2d.__init__(self, like.in_channels, like.out_channels, like.kernel_size,
                                    stride=like.stride, padding=like.padding,
                                    output_padding=like.output_padding, groups=like.groups,
                                    bias=like.bias is not None, dilation=like.dilation,
                                    device="meta")
        self.to_empty(device="cpu")
        self._freeze_init(spec)

    def forward(self, x: torch.Tensor, output_size=None) -> torch.Tensor:
        return self._quantized_forward(x, lambda t: super(FrozenConvTranspose2d, self).forward(
            t, output_size))


class FrozenLinear(_FrozenLayer, nn.Linear):
    def __init__(self, like: nn.Linear, spec: LayerSpec):
        nn.Linear.__init__(self, like.in_features, like.out_features,
                           bias=like.bias is not None, device="meta")
        self.to_empty(device="cpu")
        self._freeze_init(spec)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._quantized_forward(x, super().forward)

    def _forward64(self, x: torch.Tensor) -> torch.Tensor:
        b = self.bias.double() if self.bias is not None else None
        return nn.functional.linear(x.double(), self._weight64(), b)


FROZEN_TYPES: dict[type, type] = {
    nn.Conv2d: FrozenConv2d,
    nn.ConvTranspose2d: FrozenConvTranspose2d,
    nn.Linear: FrozenLinear,
}
FROZEN_LAYERS = tuple(FROZEN_TYPES.values())


def frozen_layer(like: nn.Module, spec: LayerSpec) -> nn.Module:
    """The frozen counterpart of the float layer `like` (values still to be loaded)."""
    for base, frozen in FROZEN_TYPES.items():
        if type(like) is base or (isinstance(like, base) and not isinstance(like,
                                                                           FROZEN_LAYERS)):
            return frozen(like, spec)
    raise TypeError(f"cannot quantize a {type(like).__name__}; quantizable layers: "
                    f"{', '.join(t.__name__ for t in FROZEN_TYPES)}")
