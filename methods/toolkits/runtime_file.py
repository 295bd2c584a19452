"""The base of methods whose result is a deployment runtime's own file.

`compress` hands the toolkit the trained float model and the calibration images `ptq`
uses (`ctx.calibration_images`, the budget's count unless set), and returns a
`bench.runtimes.base.RuntimeModule` holding the file the toolkit wrote. That module's state
is the file's bytes, so the artifact *is* that file plus segbench's header, and `size_bytes`
measures what a user ships; `rebuild` allocates the buffers from the header's sizes and the
state loads strictly. Evaluation and latency run the reloaded file in its runtime, and the
runner times it against the float baseline exported to the same runtime.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import nn

from bench.atomic import atomic_write_bytes
from bench.method import Method
from bench.runtimes import get_runtime
from bench.runtimes.base import INT8, RuntimeModule


class RuntimeFileMethod(Method):
    """Subclasses set `runtime` and `suffixes` (file part -> extension) and implement
    `toolkit_compress(ctx, model, images) -> (files, precision)`; one that trains before
    it writes the file (`pt2e_qat`) overrides `compress` and returns the `RuntimeModule`
    from `finalize` instead."""

    suffixes: dict[str, str] = {}

    def compress(self, ctx, model: nn.Module) -> nn.Module:
        model.eval()
        files, precision = self.toolkit_compress(ctx, model.cpu(), self.calibration(ctx))
        return RuntimeModule(self.runtime, files, precision, structure=model)

    def calibration(self, ctx):
        """The calibration images `ptq` uses: the config's count, else the budget's."""
        return ctx.calibration_images(self.config.calibration_images
                                      or ctx.budget.calibration_images)

    def toolkit_compress(self, ctx, model: nn.Module, images) -> tuple[dict[str, bytes], str]:
        raise NotImplementedError

    # -- artifact --------------------------------------------------------------------
    def artifact_meta(self, model: nn.Module) -> dict[str, Any]:
        m = self._module(model)
        return {"runtime": m.runtime, "files": m.sizes(), "precision": m.precision}

    def rebuild(self, model: nn.Module, meta: dict[str, Any]) -> nn.Module:
        files = meta.get("files")
        if (meta.get("runtime") != self.runtime or not isinstance(files, dict)
                or set(files) != set(self.suffixes)
                or not all(isinstance(v, int) and 0 < v < 2**31 for v in files.values())):
            raise ValueError(f"{self.name}: the header does not describe a {self.runtime} "
                             f"file with parts {', '.join(self.suffixes)}")
        return RuntimeModule(self.runtime, files, str(meta.get("precision")), structure=model)

    def check(self, model: nn.Module, meta: dict[str, Any]) -> list[str]:
        if not isinstance(model, RuntimeModule) or model.runtime != self.runtime:
            return [f"the model is not a {self.runtime} file ({type(model).__name__})"]
        if model.precision != INT8:
            return [f"the {self.runtime} file is {model.precision}, not int8"]
        return self.file_problems(model.files())

    def file_problems(self, files: dict[str, bytes]) -> list[str]:
        """What is wrong with the file itself ([]: it holds what the method claims)."""
        return []

    # -- runtime ---------------------------------------------------------------------
    def predictor(self, ctx, model: nn.Module, artifact_path):
        m = self._module(model)
        if artifact_path is not None:  # the file itself, next to the artifact, to ship
            for part, data in m.files().items():
                atomic_write_bytes(Path(artifact_path).with_suffix(self.suffixes[part]), data)
        return m.compiled(ctx.input_shape).predict

    def baseline_predictor(self, ctx, base: nn.Module):
        """The float baseline exported to the same runtime: what the row is timed against."""
        return get_runtime(self.runtime).compile(base, ctx.input_shape).predict

    def _module(self, model: nn.Module) -> RuntimeModule:
        if not isinstance(model, RuntimeModule):
            raise TypeError(f"{self.name}: expected the {self.runtime} file module, got "
                            f"{type(model).__name__}")
        return model
