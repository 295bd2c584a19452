"""Parameter and multiply-add counts.

MAdds follow torchvision's `_ops` convention (what its model tables report): the
multiply-adds of convolutions, transposed convolutions and linear layers only, bias and
everything else (BatchNorm, activations, pooling, upsampling) free. thop does the module
walk; we give it zero-cost counters for every other layer type so its totals mean exactly
that. `effective` MAdds scale each layer by the fraction of its weights that are nonzero,
which is what a sparse kernel could skip.
"""

from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass

import torch
from torch import nn

_COUNTED = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose2d, nn.Linear)


def _zero_ops(module: nn.Module, inputs, output) -> None:
    module.total_ops += torch.zeros(1, dtype=torch.float64)


def _conv_ops(module: nn.Module, inputs, output) -> None:
    # per output element: in_channels/groups * kernel multiply-adds
    w = module.weight
    if isinstance(module, nn.ConvTranspose2d):
        # each input element scatters into out_channels/groups * kernel outputs
        x = inputs[0]
        per = w.shape[1] * w.shape[2] * w.shape[3]
        module.total_ops += torch.tensor([float(x.numel() * per)], dtype=torch.float64)
        return
    per = w[0].numel()  # in/groups * prod(kernel)
    module.total_ops += torch.tensor([float(output.numel() * per)], dtype=torch.float64)


def _linear_ops(module: nn.Module, inputs, output) -> None:
    ops = float(output.numel() * module.in_features)
    module.total_ops += torch.tensor([ops], dtype=torch.float64)


@dataclass
class Complexity:
    params: int
    nonzero_params: int
    madds: int
    effective_madds: int
    per_layer: dict[str, tuple[int, float]]  # name -> (madds, weight density)


def count_params(model: nn.Module) -> tuple[int, int]:
    """(total, nonzero) over parameters and the weight-like buffers of reparametrised layers."""
    total = nonzero = 0
    for t in _weight_tensors(model):
        total += t.numel()
        nonzero += int(torch.count_nonzero(t))
    return total, nonzero


def _weight_tensors(model: nn.Module):
    seen: set[int] = set()
    for p in model.parameters():
        if id(p) not in seen:
            seen.add(id(p))
            yield p.detach()


def _density(module: nn.Module) -> float:
    w = getattr(module, "weight", None)
    if not isinstance(w, torch.Tensor) or w.numel() == 0:
        return 1.0
    return float(torch.count_nonzero(w.detach())) / w.numel()


def count_madds(model: nn.Module, input_shape: tuple[int, ...]) -> Complexity:
    """Count MAdds of one forward pass on a zero tensor of `input_shape` (N, C, H, W)."""
    import thop

    custom: dict[type, object] = {}
    for m in model.modules():
        t = type(m)
        if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose2d)):
            custom[t] = _conv_ops
        elif isinstance(m, nn.Linear):
            custom[t] = _linear_ops
        else:
            custom[t] = _zero_ops
    ops: dict[nn.Module, float] = {}

    def recorder(fn):
        def hook(module, inputs, output):
            before = float(module.total_ops.item())
            fn(module, inputs, output)
            ops[module] = ops.get(module, 0.0) + float(module.total_ops.item()) - before

        return hook

    custom = {t: recorder(fn) for t, fn in custom.items()}
    device = next(iter(model.parameters()), torch.zeros(0)).device
    was_training = model.training
    model.eval()
    x = torch.zeros(*input_shape, device=device)
    with torch.no_grad(), contextlib.redirect_stdout(io.StringIO()):
        thop.profile(model, inputs=(x,), custom_ops=custom, verbose=False, report_missing=False)
    per_layer: dict[str, tuple[int, float]] = {}
    total = eff = 0.0
    for name, m in model.named_modules():
        if m in ops and isinstance(m, _COUNTED):
            d = _density(m)
            per_layer[name] = (int(ops[m]), d)
            total += ops[m]
            eff += ops[m] * d
    model.train(was_training)
    params, nonzero = count_params(model)
    return Complexity(params, nonzero, int(round(total)), int(round(eff)), per_layer)
