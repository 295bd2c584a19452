"""The settings convention: types and declared ranges checked on creation, one error that
names the field, the value and what is valid, and that survives a process boundary."""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from typing import Any

import pytest

from bench.config import ConfigError, Settings, matches, setting, type_words


@dataclass
class _Cfg(Settings):
    bits: int = setting(4, ge=1, le=8)
    ratio: float = setting(0.5, gt=0.0, lt=1.0)
    mode: str = setting("a", choices=("a", "b"))
    epochs: int | None = setting(None, ge=0)
    names: list[str] = setting([])
    flag: bool = True
    free: Any = "x"


@pytest.mark.parametrize("kw, needle", [
    ({"bits": 0}, "bits=0; valid: an integer in [1, 8]"),
    ({"bits": 2.5}, "bits=2.5; valid: an integer in [1, 8]"),
    ({"bits": True}, "bits=True; valid: an integer in [1, 8]"),
    ({"bits": "4"}, "bits='4'; valid: an integer in [1, 8]"),
    ({"ratio": 1}, "ratio=1; valid: a number in (0, 1)"),
    ({"mode": "c"}, "mode='c'; valid: one of a, b"),
    ({"epochs": -1}, "epochs=-1; valid: null or an integer >= 0"),
    ({"names": "x"}, "names='x'; valid: a JSON list of strings"),
    ({"names": [1]}, "names=[1]; valid: a JSON list of strings"),
    ({"flag": 1}, "flag=1; valid: true or false"),
])
def test_bad_values_name_field_value_and_range(kw, needle):
    with pytest.raises(ConfigError) as e:
        _Cfg(**kw)
    assert str(e.value) == f"bad setting {needle}"


def test_good_values_pass_and_keep_their_type():
    c = _Cfg(bits=8, ratio=1e-3, epochs=0, names=["a"], free=[1, "x"])
    assert c.ratio == 1e-3 and c.epochs == 0
    assert _Cfg(ratio=0.25).names is not _Cfg().names  # a fresh list per instance
    assert isinstance(_Cfg(ratio=1e-9).ratio, float) and _Cfg(bits=2).bits == 2


def test_matches_and_words_follow_the_annotation():
    assert matches(3, float) and not matches(True, int) and matches(None, int | None)
    assert type_words(int | None) == "null or an integer"
    assert type_words(list[str]) == "a JSON list of strings"


def test_the_error_carries_the_method_and_pickles():
    e = ConfigError("bits", 0, "an integer in [1, 8]", "kmeans")
    back = pickle.loads(pickle.dumps(e))
    assert str(back) == str(e) == "method 'kmeans': bad setting bits=0; valid: an integer in [1, 8]"
    assert isinstance(back, (KeyError, ValueError))  # caught as UnknownNameError / ValueError


@dataclass
class _Grown(Settings):
    bits: int = setting(4, ge=1, le=8)
    pattern: str | None = setting(None, new=True)  # added after runs were recorded


def test_a_method_setting_added_later_stays_out_of_the_run_id_at_its_default():
    from bench.config import identity_fields

    assert identity_fields(_Grown()) == {"bits": 4}
    assert identity_fields(_Grown(bits=2)) == {"bits": 2}
    assert identity_fields(_Grown(pattern="2:4")) == {"bits": 4, "pattern": "2:4"}
    assert identity_fields(_Cfg()) == {f: getattr(_Cfg(), f) for f in _Cfg.__dataclass_fields__}
