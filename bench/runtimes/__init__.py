"""Deployment runtimes: where a compressed model is exported, run and timed besides eager
PyTorch. One module per runtime, each imported only when a grid names it, because each pulls
in a large package (openvino, executorch) that a user may not have installed:

    torch_eager          the model as it is (what every row is timed in by default)
    onnxruntime_cpu      ONNX (the zoo's exporter, methods/onnx) in onnxruntime's CPU EP;
                         integer when the graph holds QDQ pairs
    openvino_cpu         the same ONNX graph read by OpenVINO's CPU plugin; integer when it
                         holds QDQ pairs (brevitas) or FakeQuantize (NNCF)
    executorch_xnnpack   torch.export lowered to an ExecuTorch program with the XNNPACK
                         delegate (the kernels phones run); integer after PT2E quantization

A grid names the runtimes it times with `--set runtimes=torch,onnxruntime,...`
(`parse_runtimes`); every row is then exported to each and timed against the baseline
exported to the same runtime in the same process (bench/runtimes/deploy.py). A runtime
whose package is missing is a usage error naming the extra that installs it.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any

from bench.registry import UnknownNameError

EXTRA = "runtimes"  # pyproject's optional dependencies that install every runtime
# runtime name -> (module of bench/runtimes, the packages it imports)
MODULES: dict[str, tuple[str, tuple[str, ...]]] = {
    "torch": ("torch_eager", ()),
    "onnxruntime": ("onnxruntime_cpu", ("onnxruntime",)),
    "openvino": ("openvino_cpu", ("openvino",)),
    "executorch": ("executorch_xnnpack", ("executorch", "torchao")),
}
NAMES = tuple(MODULES)


class MissingRuntime(UnknownNameError):
    """A runtime's package is not installed: printed as one line, exit status 2."""


def require(package: str, runtime: str) -> ModuleType:
    """Import `package` for `runtime`, or raise MissingRuntime naming the extra to install."""
    try:
        return importlib.import_module(package)
    except ImportError as e:
        raise MissingRuntime(
            f"runtime {runtime!r} needs the {package!r} package ({e.msg}); install it with "
            f"pip install 'segbench[{EXTRA}]'") from None


def parse_runtimes(value: Any) -> list[str]:
    """`--set runtimes=...` as a list of runtime names: a comma string or a JSON list,
    each name known and its packages installed. An empty value means the default: each row
    timed in its own runtime only, as before runtimes were a setting."""
    if value is None or value == "" or value == []:
        return []
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, list) or not all(isinstance(x, str) for x in items):
        raise UnknownNameError(f"runtimes must be a comma list of runtime names, got "
                               f"{value!r}; valid: {', '.join(NAMES)}")
    out: list[str] = []
    for name in (x.strip() for x in items):
        if name not in MODULES:
            raise UnknownNameError(f"unknown runtime {name!r}; valid: {', '.join(NAMES)}")
        if name not in out:
            out.append(name)
    for name in out:
        for package in MODULES[name][1]:
            require(package, name)
    return out


def get_runtime(name: str):
    """The Runtime of that name (its module imported now)."""
    if name not in MODULES:
        raise UnknownNameError(f"unknown runtime {name!r}; valid: {', '.join(NAMES)}")
    for package in MODULES[name][1]:
        require(package, name)
    module = importlib.import_module(f"bench.runtimes.{MODULES[name][0]}")
    return module.RUNTIME
