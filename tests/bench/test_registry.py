import pytest

from bench.registry import Registry, UnknownNameError


def test_duplicate_name_raises():
    r = Registry("thing")
    r.add("a", 1)
    with pytest.raises(ValueError, match="already registered"):
        r.add("a", 2)


def test_unknown_name_lists_valid_choices():
    r = Registry("thing")
    r.add("beta", 1)
    r.add("alpha", 2)
    with pytest.raises(UnknownNameError) as e:
        r.get("gamma")
    assert str(e.value) == "unknown thing 'gamma'; valid choices: alpha, beta"


def test_names_filter_by_pattern():
    r = Registry("thing")
    for n in ("unet", "unet_small", "enet"):
        r.add(n, n)
    assert r.names("unet*") == ["unet", "unet_small"]
