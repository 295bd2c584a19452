"""Method settings: one convention and one error for every plugin.

A method's settings are a dataclass nested in the method class, `class Config(Settings)`,
whose fields are declared with `setting(default, <range>)`:

    @dataclass
    class Config(Settings):
        bits: int = setting(5, ge=1, le=16)            # an integer in [1, 16]
        init: str = setting("linear", choices=INITS)   # one of INITS
        sparsity: float = setting(0.5, ge=0.0, lt=1.0) # a number in [0, 1)
        epochs: int | None = setting(None, ge=0)       # null or an integer >= 0

`Settings.__post_init__` checks every field against its annotation (a string where an
integer belongs is caught here, not halfway through a run) and its declared range, and
raises `ConfigError` naming the field, the value and what is valid; `make_config` adds the
method's name and the CLI prints it as one line and exits 2. Rules that tie fields
together (an end step after the begin step) go in the subclass's `__post_init__`, after
`super().__post_init__()`, and raise `ConfigError` too.
"""

from __future__ import annotations

import copy
import dataclasses
import types
import typing
from dataclasses import dataclass
from typing import Any, Union

from bench.registry import UnknownNameError


class ConfigError(UnknownNameError, ValueError):
    """A bad setting: names the method, the field, the value and the valid range. An
    UnknownNameError, so every command prints it as one line and exits 2."""

    def __init__(self, field: str, value: Any, valid: str, method: str = ""):
        super().__init__(field)
        self.field, self.value, self.valid, self.method = field, value, valid, method

    def __reduce__(self):  # survives pickling (a worker process reporting it)
        return type(self), (self.field, self.value, self.valid, self.method)

    def __str__(self) -> str:
        who = f"method {self.method!r}: " if self.method else ""
        return f"{who}bad setting {self.field}={self.value!r}; valid: {self.valid}"


@dataclass(frozen=True)
class Range:
    """The values a setting admits beyond its type: bounds, or a set of choices."""

    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None
    choices: tuple | None = None

    def admits(self, v: Any) -> bool:
        if self.choices is not None:
            return v in self.choices
        if not isinstance(v, (int, float)):
            return True
        return not ((self.ge is not None and v < self.ge) or (self.gt is not None and v <= self.gt)
                    or (self.le is not None and v > self.le)
                    or (self.lt is not None and v >= self.lt))

    def words(self) -> str:
        if self.choices is not None:
            return "one of " + ", ".join(map(str, self.choices))
        lo = f"[{self.ge:g}" if self.ge is not None else f"({self.gt:g}" if self.gt is not None \
            else None
        hi = f"{self.le:g}]" if self.le is not None else f"{self.lt:g})" if self.lt is not None \
            else None
        if lo and hi:
            return f"in {lo}, {hi}"
        if lo:
            return (">= " if lo[0] == "[" else "> ") + lo[1:]
        if hi:
            return ("<= " if hi[-1] == "]" else "< ") + hi[:-1]
        return ""


def setting(default: Any, *, ge: float | None = None, gt: float | None = None,
            le: float | None = None, lt: float | None = None, choices=None,
            added: bool = False) -> Any:
    """A settings field with its default and its valid range (a list or dict default is
    copied per instance). `added=True` marks a field added to a method after runs were
    recorded: at its default it is left out of the run id (`identity_dict`), so adding a
    setting does not invalidate the finished runs of the method."""
    meta = {"range": Range(ge, gt, le, lt, tuple(choices) if choices is not None else None),
            "added": added}
    if isinstance(default, (list, dict)):
        return dataclasses.field(default_factory=lambda: copy.deepcopy(default), metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def _args(tp: Any) -> tuple:
    return typing.get_args(tp)


def _is_union(tp: Any) -> bool:
    return typing.get_origin(tp) in (Union, types.UnionType)


def matches(value: Any, tp: Any) -> bool:
    """Whether a JSON value fits a settings annotation (an int fits a float; a bool is
    neither)."""
    if tp is Any:
        return True
    if _is_union(tp):
        return any(matches(value, a) for a in _args(tp))
    if tp is type(None):
        return value is None
    if tp is bool:
        return isinstance(value, bool)
    if isinstance(value, bool):
        return False
    if tp is int:
        return isinstance(value, int)
    if tp is float:
        return isinstance(value, (int, float))
    origin = typing.get_origin(tp) or tp
    if origin is list:
        return isinstance(value, list) and all(matches(v, (_args(tp) or (Any,))[0])
                                               for v in value)
    if origin is dict:
        return isinstance(value, dict)
    return isinstance(value, origin)


_WORDS = {bool: "true or false", int: "an integer", float: "a number", str: "a string",
          type(None): "null", dict: "a JSON object"}


def type_words(tp: Any) -> str:
    """How a user writes a value of this annotation, e.g. "null or an integer"."""
    if _is_union(tp):
        parts = [type_words(a) for a in _args(tp)]
        return " or ".join(sorted(parts, key=lambda p: p != "null"))
    origin = typing.get_origin(tp) or tp
    if origin is list:
        inner = (_args(tp) or (Any,))[0]
        return "a JSON list" + (f" of {type_words(inner)[2:]}s" if inner is not Any else "")
    return _WORDS.get(origin, getattr(origin, "__name__", str(origin)))


def describe_field(f: dataclasses.Field, tp: Any) -> str:
    """What a field admits, for error messages and docs: type words plus its range."""
    rng = f.metadata.get("range")
    words = type_words(tp)
    extra = rng.words() if rng is not None else ""
    if rng is not None and rng.choices is not None:
        return extra + (" or null" if _is_union(tp) and type(None) in _args(tp) else "")
    return f"{words} {extra}".strip()


def identity_dict(config: Any) -> dict[str, Any]:
    """The settings as hashed into run ids and written to records: every field, except
    one declared `added` that still has its default (see `setting`)."""
    out = {}
    for f in dataclasses.fields(config):
        v = getattr(config, f.name)
        if f.metadata.get("added") and v == _default(f):
            continue
        out[f.name] = copy.deepcopy(v)
    return out


def _default(f: dataclasses.Field) -> Any:
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return f.default


def field_types(cls: type) -> dict[str, Any]:
    """The resolved annotation of every field of a settings dataclass."""
    return typing.get_type_hints(cls)


def validate(config: Any) -> None:
    """Raise ConfigError on the first field whose value does not fit its annotation or
    its declared range."""
    hints = field_types(type(config))
    for f in dataclasses.fields(config):
        v, tp = getattr(config, f.name), hints.get(f.name, Any)
        rng = f.metadata.get("range")
        if not matches(v, tp) or (rng is not None and v is not None and not rng.admits(v)):
            raise ConfigError(f.name, v, describe_field(f, tp))


def check_types(cls: type, overrides: dict[str, Any], prefix: str = "") -> None:
    """ConfigError for the first override whose value does not fit the annotation of
    the dataclass field it sets (for `--set budget.*` and `train.*`, whose dataclasses
    are not Settings)."""
    hints = field_types(cls)
    for k, v in overrides.items():
        if k in hints and not matches(v, hints[k]):
            raise ConfigError(prefix + k, v, type_words(hints[k]))


@dataclass
class Settings:
    """Base of every method's `Config`: checks types and declared ranges on creation."""

    def __post_init__(self) -> None:
        validate(self)
