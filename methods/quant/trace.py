"""A dataflow record of one forward pass: which layer feeds which, across arbitrary Python.

Where quantizers go and which BatchNorms fold depend on the dataflow (does this conv feed
only a BatchNorm? is this ReLU's input a conv's output?). torch.fx cannot trace the zoo
(ENet unpacks tensor shapes, PadCrop branches on them), so we run the model once on an
example input and record every leaf-module call (through global module hooks) and every
torch function called outside a leaf module (through a TorchFunctionMode), naming each
tensor a *value* when it is produced. An in-place op produces a new value, so consumers
see the tensor as it was when they read it. Dropout and Identity modules are transparent.
The record only guides placement; the quantized model stays an eager nn.Module, so it
keeps working at every input size.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_leaves

TRANSPARENT = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout,
               nn.Identity)


@dataclass
class Call:
    """One recorded call: a leaf module (`module` set) or a torch function."""

    index: int
    name: str  # qualified module name, or the function's name
    module: nn.Module | None
    inputs: list[int]  # value ids of the tensor arguments, in order
    outputs: list[int] = field(default_factory=list)


@dataclass
class Trace:
    calls: list[Call]
    input_value: int
    output_values: list[int]
    module_calls: dict[str, list[Call]]

    def producer(self, value: int) -> Call | None:
        return self._producers.get(value)

    def consumers(self, value: int) -> list[Call]:
        return self._consumers.get(value, [])

    def __post_init__(self) -> None:
        self._producers: dict[int, Call] = {}
        self._consumers: dict[int, list[Call]] = {}
        for c in self.calls:
            for v in c.outputs:
                self._producers[v] = c
            for v in dict.fromkeys(c.inputs):
                self._consumers.setdefault(v, []).append(c)

    def calls_of(self, types: tuple[type, ...]) -> Iterator[Call]:
        return (c for c in self.calls if c.module is not None and isinstance(c.module, types))


class _Recorder(TorchFunctionMode):
    def __init__(self, model: nn.Module):
        super().__init__()
        self.names = {id(m): n for n, m in model.named_modules()
                      if not any(True for _ in m.children())}
        self.values: dict[int, int] = {}  # id(tensor) -> current value id
        self.keep: list[torch.Tensor] = []  # keeps traced tensors alive: ids stay unique
        self.calls: list[Call] = []
        self.module_calls: dict[str, list[Call]] = {}
        self.depth = 0
        self.pending: list[Call] = []
        self.next_value = 0

    def new_value(self, t: torch.Tensor) -> int:
        v = self.next_value
        self.next_value += 1
        self.values[id(t)] = v
        self.keep.append(t)
        return v

    def value_ids(self, obj) -> list[int]:
        out = []
        for t in tree_leaves(obj):
            if isinstance(t, torch.Tensor):
                v = self.values.get(id(t))
                out.append(self.new_value(t) if v is None else v)  # constants: fresh values
        return out

    def _outputs(self, call: Call, out) -> None:
        call.outputs = [self.new_value(t) for t in tree_leaves(out)
                        if isinstance(t, torch.Tensor)]

    # -- leaf modules (global hooks) ----------------------------------------------
    def pre_hook(self, module, args):
        name = self.names.get(id(module))
        if name is None:
            return
        if self.depth == 0:
            call = Call(len(self.calls), name, module, self.value_ids(args))
            self.pending.append(call)
        self.depth += 1

    def hook(self, module, args, out):
        name = self.names.get(id(module))
        if name is None:
            return
        self.depth -= 1
        if self.depth:
            return
        call = self.pending.pop()
        if isinstance(module, TRANSPARENT) and isinstance(out, torch.Tensor) and call.inputs:
            self.values[id(out)] = call.inputs[0]  # alias: same value flows through
            self.keep.append(out)
            return
        call.index = len(self.calls)
        self._outputs(call, out)
        self.calls.append(call)
        self.module_calls.setdefault(name, []).append(call)

    # -- everything else ------------------------------------------------------------
    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if self.depth:
            return func(*args, **kwargs)
        inputs = self.value_ids((args, kwargs))
        out = func(*args, **kwargs)
        if any(isinstance(t, torch.Tensor) for t in tree_leaves(out)):
            name = getattr(func, "__name__", None) or str(func)
            call = Call(len(self.calls), name, None, inputs)
            self._outputs(call, out)
            self.calls.append(call)
        return out


@torch.no_grad()
def trace_dataflow(model: nn.Module, example: torch.Tensor) -> Trace:
    """Run `model(example)` in eval mode and return its dataflow record."""
    from torch.nn.modules.module import (
        register_module_forward_hook,
        register_module_forward_pre_hook,
    )

    rec = _Recorder(model)
    was_training = model.training
    model.eval()
    input_value = rec.new_value(example)
    h1 = register_module_forward_pre_hook(rec.pre_hook)
    h2 = register_module_forward_hook(rec.hook)
    try:
        with rec:
            out = model(example)
    finally:
        h1.remove()
        h2.remove()
        model.train(was_training)
    outputs = [rec.values[id(t)] for t in tree_leaves(out) if isinstance(t, torch.Tensor)]
    return Trace(rec.calls, input_value, outputs, rec.module_calls)
