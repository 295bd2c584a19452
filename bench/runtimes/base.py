"""What every runtime offers, and the module that holds a runtime's own file as a model.

A `Runtime` turns a PyTorch model into a predictor (`compile`: export, build, load), or
loads its own file format (`load`: an OpenVINO IR, an ExecuTorch program), and says what
precision the result computes in, read from the graph the runtime built, not assumed from
the method: a model that only *emulates* int8 in float (brevitas layers traced to
round/clamp) is reported as fp32.

`RuntimeModule` is how a peer toolkit's artifact (NNCF's IR, PT2E's .pte) becomes a run's
model: its state is the file's bytes (uint8 buffers, so the artifact's size is the file's
size), and its forward runs that file in its runtime. The zoo model it stands for is kept
beside it, unregistered, so MAdds and parameters still describe the network.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import nn

Predictor = Callable[[torch.Tensor], torch.Tensor]
FP32, INT8 = "fp32", "int8"


@dataclass
class Compiled:
    """A runnable model in one runtime: images (N, 3, H, W) -> logits, and what it runs."""

    predict: Predictor
    precision: str  # FP32 or INT8, read from the built graph
    detail: dict[str, Any] = field(default_factory=dict)  # e.g. integer op counts


class Runtime:
    """Base of the runtimes; each module of bench/runtimes defines one as `RUNTIME`."""

    name: ClassVar[str] = ""

    def compile(self, model: nn.Module, input_shape: tuple[int, ...]) -> Compiled:
        """Export `model` (eval, CPU) for inputs of `input_shape` and build it here."""
        raise NotImplementedError

    def load(self, files: dict[str, bytes], input_shape: tuple[int, ...],
             precision: str | None = None) -> Compiled:
        """Build this runtime's own file (`files`: its parts by name); `precision` is what
        the code that wrote it knows, for runtimes that cannot read it back."""
        raise NotImplementedError(f"runtime {self.name!r} has no file format of its own")

    def threads(self) -> int:
        """Intra-op threads: torch's (the run's `--threads`), so every runtime uses the
        cores the record reports."""
        return torch.get_num_threads()


class RuntimeModule(nn.Module):
    """A runtime's own file as a module: `file_<part>` uint8 buffers, run by that runtime."""

    def __init__(self, runtime: str, files: dict[str, bytes] | dict[str, int],
                 precision: str, structure: nn.Module | None = None):
        super().__init__()
        self.runtime = runtime
        self.precision = precision
        self.parts = list(files)
        for part, data in files.items():
            t = (torch.frombuffer(bytearray(data), dtype=torch.uint8).clone()
                 if isinstance(data, (bytes, bytearray)) else torch.zeros(int(data),
                                                                          dtype=torch.uint8))
            self.register_buffer(f"file_{part}", t)
        self.__dict__["structure"] = structure  # unregistered: not in the state dict
        self._compiled: dict[tuple[int, ...], Compiled] = {}

    def files(self) -> dict[str, bytes]:
        return {p: getattr(self, f"file_{p}").numpy().tobytes() for p in self.parts}

    def sizes(self) -> dict[str, int]:
        """What `rebuild` needs to allocate the buffers before the state loads."""
        return {p: int(getattr(self, f"file_{p}").numel()) for p in self.parts}

    def compiled(self, input_shape: tuple[int, ...]) -> Compiled:
        from bench.runtimes import get_runtime

        key = tuple(input_shape[1:])
        if key not in self._compiled:
            self._compiled[key] = get_runtime(self.runtime).load(
                self.files(), (1, *input_shape[1:]), self.precision)
        return self._compiled[key]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.compiled(tuple(x.shape)).predict(x)

    def _load_from_state_dict(self, *args, **kwargs):  # new bytes: rebuild on next call
        self._compiled = {}
        super()._load_from_state_dict(*args, **kwargs)


def complexity_model(model: nn.Module) -> nn.Module:
    """The module whose layers MAdds and parameters are counted on: the zoo network a
    runtime file stands for, else the model itself."""
    if isinstance(model, RuntimeModule) and model.structure is not None:
        return model.structure
    return model


def per_image(run: Callable[[torch.Tensor], torch.Tensor]) -> Predictor:
    """A batch predictor from a batch-1 one (runtimes whose programs have a static batch)."""

    def predict(images: torch.Tensor) -> torch.Tensor:
        x = images.detach().to("cpu", torch.float32).contiguous()
        out = torch.cat([run(x[i : i + 1]) for i in range(x.shape[0])])
        return out.to(images.device)

    return predict
