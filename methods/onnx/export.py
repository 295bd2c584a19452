"""PyTorch -> ONNX for onnxruntime: the float baseline and the frozen quantized models.

We use torch's TorchScript exporter (`dynamo=False`): it exports the zoo in well under a
second where the dynamo exporter takes 5-15 s on our 2-core machine, and it honours the
`symbolic` of the frozen layers' autograd functions, which is how QuantizeLinear /
DequantizeLinear nodes with int8 initializers get into the graph. Two things it cannot do
by itself are patched for the duration of the export only:

* `nn.MaxUnpool2d` (ENet's decoder) has no ONNX symbolic; it is swapped for the same
  computation written as a ScatterElements into a zero tensor.
* `nn.AdaptiveAvgPool2d` to a size that does not divide its input (PP-LiteSeg's 2x2 and
  4x4 pyramid bins on a 12x15 map at CamVid's 360x480) has no ONNX symbolic either; it
  is swapped for the same bins written as two constant averaging matrices, exact at
  the export's fixed input size.
* `nn.PReLU` with a slope per channel (ENet's encoder) is written as
  `Relu(x) + slope * Min(x, 0)`, the same values bit for bit (one term is always zero):
  onnxruntime's PRelu kernel broadcasts the slope element by element and took a third of
  ENet's time, in float and in int8 alike, where the three vectorised ops take a quarter of
  that (docs/runtimes.md has the profile). `export_onnx(..., decompose_prelu=False)`
  keeps the PRelu node.
* On request (`slice_pool_indices=True`, what the OpenVINO runtime asks for), a 2x2
  max-pool that returns indices (ENet's encoder) is written as strided slices and
  comparisons (`SlicedMaxPool2d`): the same maxima and indices, where ONNX MaxPool's
  indices output runs in OpenVINO's scalar reference kernel.
* Weights are exported as initializers, never graph inputs, and the batch axis is dynamic
  while H and W are fixed: onnxruntime's layout and fusion passes need constant weights
  and static spatial shapes.
"""

from __future__ import annotations

import contextlib
import io
import warnings
from collections.abc import Iterator

import torch
from torch import nn

OPSET = 17
INPUT_NAME, OUTPUT_NAME = "images", "logits"


class ScatterMaxUnpool2d(nn.Module):
    """`nn.MaxUnpool2d` as zeros.scatter(plane indices): the same result, exportable."""

    def __init__(self, unpool: nn.MaxUnpool2d):
        super().__init__()
        self.kernel_size = _pair(unpool.kernel_size)
        self.stride = _pair(unpool.stride)
        self.padding = _pair(unpool.padding)

    def forward(self, x: torch.Tensor, indices: torch.Tensor,
                output_size: list[int] | None = None) -> torch.Tensor:
        n, c, h, w = x.shape
        if output_size is not None:
            oh, ow = (int(s) for s in list(output_size)[-2:])
        else:
            oh = (h - 1) * self.stride[0] - 2 * self.padding[0] + self.kernel_size[0]
            ow = (w - 1) * self.stride[1] - 2 * self.padding[1] + self.kernel_size[1]
        out = x.new_zeros(n, c, oh * ow)
        out = out.scatter(2, indices.reshape(n, c, h * w), x.reshape(n, c, h * w))
        return out.reshape(n, c, oh, ow)


class MatmulAdaptiveAvgPool2d(nn.Module):
    """`nn.AdaptiveAvgPool2d` as P_h @ x @ P_w^T, each row of P averaging one of PyTorch's
    bins [floor(i*n/o), ceil((i+1)*n/o)): exportable for any input size, since the
    exporter traces at a fixed H and W and the matrices become constants."""

    def __init__(self, pool: nn.AdaptiveAvgPool2d):
        super().__init__()
        size = pool.output_size
        self.output_size = tuple(size) if isinstance(size, (tuple, list)) else (size, size)

    @staticmethod
    def _bins(n: int, o: int, like: torch.Tensor) -> torch.Tensor:
        p = torch.zeros(o, n, dtype=like.dtype, device=like.device)
        for i in range(o):
            start, end = (i * n) // o, -((-(i + 1) * n) // o)
            p[i, start:end] = 1.0 / (end - start)
        return p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = (int(s) for s in x.shape[-2:])
        oh, ow = (n if o is None else o for o, n in zip(self.output_size, (h, w)))  # None: keep
        return self._bins(h, oh, x) @ x @ self._bins(w, ow, x).T


class DecomposedPReLU(nn.Module):
    """`nn.PReLU` as relu(x) + slope * min(x, 0): equal to it in floating point (for every
    x one of the terms is exactly zero), and exported as Relu, Min, Mul and Add."""

    def __init__(self, prelu: nn.PReLU):
        super().__init__()
        self.prelu = prelu  # the same parameter: nothing is copied

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.prelu.weight
        if w.numel() > 1:  # per channel: broadcast over N, H, W
            w = w.reshape(1, -1, *([1] * (x.dim() - 2)))
        return torch.relu(x) + w * torch.minimum(x, torch.zeros((), dtype=x.dtype))


class SlicedMaxPool2d(nn.Module):
    """`nn.MaxPool2d(k, stride=k, return_indices=True)` for k = 2 written as the four strided
    slices of each 2x2 window and three comparisons: the same maxima and the same indices
    (into the H*W plane, the first maximum in the window's row-major order, as PyTorch's
    kernel picks it; NaN aside). Exported as Slice, Max, Greater, Where and Add, where the
    native export is ONNX MaxPool with an indices output, which OpenVINO's CPU plugin runs
    in its reference (scalar) implementation: 80 % of ENet's time there (docs/runtimes.md).
    """

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h, w = (int(s) for s in x.shape[-2:])
        oh, ow = h // 2, w // 2
        x = x[..., : 2 * oh, : 2 * ow]  # floor mode drops the last odd row/column
        a, b = x[..., 0::2, 0::2], x[..., 0::2, 1::2]
        c, d = x[..., 1::2, 0::2], x[..., 1::2, 1::2]
        top_b, bottom_d = b > a, d > c  # strict: the earlier of equal values wins
        top, bottom = torch.maximum(a, b), torch.maximum(c, d)
        take_bottom = bottom > top
        one = torch.ones((), dtype=torch.long)
        dx = torch.where(take_bottom, bottom_d.long(), top_b.long())
        # row offset (2i + dy) * w and column 2j + dx, broadcast from an (oh, 1) and a
        # (1, ow) constant so the graph holds no constant the size of a feature map
        rows = torch.arange(oh, dtype=torch.long).mul(2 * w).reshape(oh, 1)
        cols = torch.arange(ow, dtype=torch.long).mul(2).reshape(1, ow)
        index = torch.where(take_bottom, one * w, one * 0) + dx + rows + cols
        return torch.maximum(top, bottom), index


def _pair(v) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else (int(v[0]), int(v[1]))


def _sliceable(m: nn.Module) -> bool:
    """A 2x2, stride-2, unpadded, undilated, floor-mode max-pool that returns indices."""
    return (type(m) is nn.MaxPool2d and m.return_indices and not m.ceil_mode
            and _pair(m.kernel_size) == (2, 2) and _pair(m.stride or m.kernel_size) == (2, 2)
            and _pair(m.padding) == (0, 0) and _pair(m.dilation) == (1, 1))


@contextlib.contextmanager
def exportable(model: nn.Module, decompose_prelu: bool = False,
               slice_pool_indices: bool = False) -> Iterator[nn.Module]:
    """Temporarily replace modules the exporter cannot handle (and, on request, PReLU by
    its decomposition and 2x2 max-pooling with indices by its sliced form); restores them
    after."""
    swapped = []
    for name, m in list(model.named_modules()):
        if slice_pool_indices and _sliceable(m):
            swapped.append((name, m))
            model.set_submodule(name, SlicedMaxPool2d())
        elif isinstance(m, nn.MaxUnpool2d):
            swapped.append((name, m))
            model.set_submodule(name, ScatterMaxUnpool2d(m))
        elif isinstance(m, nn.AdaptiveAvgPool2d) and m.output_size not in (1, (1, 1)):
            swapped.append((name, m))  # a global pool exports natively (GlobalAveragePool)
            model.set_submodule(name, MatmulAdaptiveAvgPool2d(m))
        elif decompose_prelu and type(m) is nn.PReLU:
            swapped.append((name, m))
            model.set_submodule(name, DecomposedPReLU(m))
    try:
        yield model
    finally:
        for name, m in swapped:
            model.set_submodule(name, m)


def export_onnx(model: nn.Module, input_shape: tuple[int, ...],
                decompose_prelu: bool = True, slice_pool_indices: bool = False) -> bytes:
    """ONNX bytes of `model` (eval mode, CPU) for inputs of `input_shape` (any batch)."""
    was_training = model.training
    model.eval()
    device = next(iter(model.parameters())).device
    model.cpu()
    x = torch.zeros(*input_shape)
    buf = io.BytesIO()
    try:
        with exportable(model, decompose_prelu, slice_pool_indices), torch.no_grad(), \
                warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                model, (x,), buf, dynamo=False, opset_version=OPSET, export_params=True,
                keep_initializers_as_inputs=False, do_constant_folding=True,
                input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
            )
    finally:
        model.to(device)
        model.train(was_training)
    return buf.getvalue()
