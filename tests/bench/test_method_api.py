import importlib
import pkgutil
import subprocess
import sys
from dataclasses import dataclass

import pytest

import methods
from bench.config import Settings
from bench.method import (
    METHODS,
    PIPELINE_MODULES,
    Method,
    expand_methods,
    families,
    register_method,
)
from bench.registry import UnknownNameError


def test_every_module_in_methods_registers_a_method():
    """A plugin file that forgets @register_method would silently never run."""
    registered_modules = {METHODS.get(n).__module__ for n in METHODS.names()}
    registered_modules |= set(PIPELINE_MODULES.values())
    for mod in pkgutil.iter_modules(methods.__path__):
        if mod.name.startswith("_") or mod.ispkg:
            continue
        module = importlib.import_module(f"methods.{mod.name}")
        assert module.__name__ in registered_modules, (
            f"methods/{mod.name}.py registers no method"
        )


def test_building_block_subpackages_register_no_method_and_decode_alone():
    """methods/ holds plugins; its subpackages are building blocks: importing all of them
    registers no method, and they alone register every encoding and codec an artifact
    can use (decoding never needs a plugin)."""
    code = (
        "import pkgutil, importlib, methods\n"
        "import bench.method as bm\n"
        "for m in pkgutil.walk_packages(methods.__path__, 'methods.'):\n"
        "    if m.ispkg or m.name.rsplit('.', 1)[0] != 'methods':\n"
        "        importlib.import_module(m.name)\n"
        "assert not bm.METHODS._items, sorted(bm.METHODS._items)\n"
        "from bench.artifact import CODECS, ENCODINGS\n"
        "print(','.join(ENCODINGS.names()), ','.join(CODECS.names()))\n"
        "import sys; assert not [k for k in sys.modules if k in "
        "{'methods.kmeans', 'methods.huffman', 'methods.prune_unstructured', 'methods.qat'}]\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.split()
    assert out == ["codebook,dense,int_packed,sparse_bitmask,sparse_relidx", "huffman,raw"]


def test_none_is_registered_as_its_own_family():
    assert "none" in METHODS
    assert families()["none"] == ["none"]


def test_unknown_method_lists_choices():
    with pytest.raises(UnknownNameError, match="unknown method 'nope'; valid choices: .*none"):
        expand_methods("nope")


def test_unknown_setting_names_valid_settings():
    with pytest.raises(UnknownNameError, match="no stage of 'none' has that setting"):
        expand_methods("none", {"sparsity": 0.5})


@dataclass
class _Cfg(Settings):
    level: int = 1
    mode: str = "a"


@pytest.fixture
def toy_methods():
    """Two throwaway plugins in a throwaway family, removed afterwards."""
    METHODS.names()  # load the real plugins first

    @register_method("toy_a", family="toyfam")
    class ToyA(Method):
        Config = _Cfg
        sweep = [{"level": 1}, {"level": 2}]

    @register_method("toy_b", family="toyfam")
    class ToyB(Method):
        Config = _Cfg

    yield
    for n in ("toy_a", "toy_b"):
        METHODS._items.pop(n)


def test_family_expands_to_members_and_sweeps(toy_methods):
    vs = expand_methods("toyfam")
    assert [(v.spec, v.stage_overrides) for v in vs] == [
        ("toy_a", [{"level": 1}]),
        ("toy_a", [{"level": 2}]),
        ("toy_b", [{}]),
    ]


def test_single_method_uses_defaults_and_set(toy_methods):
    (v,) = expand_methods("toy_a", {"mode": "b"})
    assert v.stage_overrides == [{"mode": "b"}]
    assert v.stages()[0].method.config == _Cfg(level=1, mode="b")


def test_pipeline_routes_qualified_and_bare_settings(toy_methods):
    (v,) = expand_methods("toy_a+toy_b", {"toy_b.level": 5, "mode": "z"})
    assert v.stage_overrides == [{"mode": "z"}, {"level": 5, "mode": "z"}]
    with pytest.raises(UnknownNameError, match="not a stage"):
        expand_methods("toy_a+toy_b", {"toy_c.level": 1})


def test_comma_list_deduplicates(toy_methods):
    vs = expand_methods("toy_b,toy_b,none")
    assert [v.spec for v in vs] == ["toy_b", "none"]


def test_register_requires_method_subclass():
    with pytest.raises(TypeError):
        register_method("not_a_method")(object)


@pytest.mark.parametrize("module, registry, group, builtin", [
    ("bench.method", "METHODS", "segbench.methods", "none"),
    ("bench.artifact", "ENCODINGS", "segbench.codecs", "codebook"),
])
def test_entry_point_plugins_are_loaded(monkeypatch, module, registry, group, builtin):
    """Third-party plugins arrive through the `segbench.methods` entry-point group, and
    third-party encodings through `segbench.codecs`, beside the built-in ones (decoding
    an artifact needs no method plugin)."""
    mod = importlib.import_module(module)
    loaded = []

    class EP:
        def load(self):
            loaded.append(True)

    wanted = group
    monkeypatch.setattr(mod, "entry_points", lambda group: [EP()] if group == wanted else [])
    reg = getattr(mod, registry)
    monkeypatch.setattr(reg, "_loaded", False)
    assert builtin in reg.names() and loaded == [True]
