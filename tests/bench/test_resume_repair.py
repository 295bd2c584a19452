"""Resume repairs what it cannot trust: an ok run whose artifact is missing or changed is
run again, and a malformed baseline sidecar (e.g. `[]`) is retrained instead of failing
every run that depends on it."""

from __future__ import annotations

import pytest
import torch

from bench.baseline import cache_paths
from bench.records import read_record
from bench.runner import pending, run_grid


def _grid(specs, results):
    return run_grid(specs, results=results, device=torch.device("cpu"))


@pytest.mark.parametrize("damage", ["missing", "flipped byte"])
def test_a_rerun_repairs_an_ok_run_whose_artifact_is_damaged(make_spec, results, damage,
                                                             capsys):
    spec = make_spec("none", "enet")
    (first,) = _grid([spec], results)
    art = results / first["artifact"]
    if damage == "missing":
        art.unlink()
    else:
        data = bytearray(art.read_bytes())
        data[len(data) // 2] ^= 0x01
        art.write_bytes(bytes(data))
    assert pending([spec], results)[0] == [spec]
    assert f"re-running {spec.run_id}" in capsys.readouterr().err
    (again,) = _grid([spec], results)
    assert again["status"] == "ok" and again["started"] >= first["started"]
    assert pending([spec], results) == ([], [read_record(results, spec.run_id)])
    assert art.is_file()


def test_a_baseline_sidecar_of_an_empty_list_is_retrained(make_spec, results, capsys):
    """End to end: the dependent run retrains the baseline instead of failing forever."""
    base, fp16 = make_spec("none", "enet"), make_spec("fp16", "enet")
    _grid([base], results)
    _, side = cache_paths(results, base.run_id)
    side.write_text("[]")
    rec = _grid([fp16], results)[-1]
    assert rec["run_id"] == fp16.run_id
    assert rec["status"] == "ok", rec.get("error")
    assert rec["baseline"]["trained_now"] is True
    assert "retraining" in capsys.readouterr().err


@pytest.mark.parametrize("sidecar", ["[]", '{"sha256": 5}', "{", '{"sha256": "x"}',
                                     '{"sha256": "x", "train": {"seconds": "long"}}'])
def test_every_malformed_sidecar_means_retrain(tmp_path, sidecar, capsys):
    from torch import nn

    from bench.baseline import get_or_train

    trained = []

    def train(m):
        trained.append(1)
        return {"seconds": 0.0}

    get_or_train(nn.Linear(2, 2), tmp_path, "k", train, {})
    _, side = cache_paths(tmp_path, "k")
    side.write_text(sidecar)
    info, now = get_or_train(nn.Linear(2, 2), tmp_path, "k", train, {})
    assert now is True and len(trained) == 2
    assert "retraining" in capsys.readouterr().err
    assert get_or_train(nn.Linear(2, 2), tmp_path, "k", train, {}) == (info, False)
