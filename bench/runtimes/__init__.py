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

import contextlib
import importlib
import logging
from collections.abc import Iterator
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


# What torch logs, once per process, when an optional toolkit is first imported, by the
# logger that logs it: none of it concerns the run, and all of it reads like an error on
# stderr. cpp_extension: brevitas imports torch.utils.cpp_extension, which looks for a CUDA
# toolkit at import time on a CPU-only torch; _pytree: torchao registers its
# KernelPreference enum with register_constant, which torch 2.14 deprecates for enums.
IMPORT_NOTICES = {
    "torch.utils.cpp_extension": "No CUDA runtime is found, using CUDA_HOME=",
    "torch.utils._pytree": "is an Enum subclass and is now natively supported by "
                           "torch.compile",
}


class _DropNotice(logging.Filter):
    def __init__(self, text: str) -> None:
        super().__init__()
        self.text = text

    def filter(self, record: logging.LogRecord) -> bool:
        return self.text not in record.getMessage()


@contextlib.contextmanager
def quiet_import() -> Iterator[None]:
    """Import a toolkit without torch's import-time notices (`IMPORT_NOTICES`): each is
    dropped by its own logger and its own text, and only while the import runs, so every
    other message of those loggers, and anything they log later, still reaches stderr."""
    filters = [(logging.getLogger(name), _DropNotice(text))
               for name, text in IMPORT_NOTICES.items()]
    for logger, f in filters:
        logger.addFilter(f)
    try:
        yield
    finally:
        for logger, f in filters:
            logger.removeFilter(f)


def require(package: str, runtime: str) -> ModuleType:
    """Import `package` for `runtime`, or raise MissingRuntime naming the extra to install."""
    try:
        with quiet_import():
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
