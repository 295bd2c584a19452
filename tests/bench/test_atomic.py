import os
import stat

import pytest

from bench import atomic
from bench.atomic import atomic_write, atomic_write_bytes, atomic_write_text


def test_writes_and_replaces(tmp_path):
    p = tmp_path / "sub" / "r.json"
    atomic_write_text(p, "one")
    atomic_write_text(p, "twø")
    assert p.read_text(encoding="utf-8") == "twø"
    assert os.listdir(p.parent) == ["r.json"]


def test_permissions_follow_the_umask_not_mkstemp(tmp_path, monkeypatch):
    monkeypatch.setattr(atomic, "_MODE", 0o644)
    p = atomic_write_bytes(tmp_path / "a.bin", b"x")
    assert stat.S_IMODE(p.stat().st_mode) == 0o644


def test_module_mode_is_0666_less_the_umask():
    mask = os.umask(0)
    os.umask(mask)
    assert atomic._MODE == 0o666 & ~mask


def test_a_failing_writer_leaves_the_old_file_and_no_temporary(tmp_path):
    p = tmp_path / "r.json"
    atomic_write_text(p, "kept")

    def boom(f):
        f.write(b"half")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        atomic_write(p, boom)
    assert p.read_text() == "kept"
    assert os.listdir(tmp_path) == ["r.json"]
