"""`verify` re-checks runs on real data: the record says where the data was, and
`--data-root` points it elsewhere (a moved tree)."""

import json
import shutil

import torch

from bench.cli import main
from bench.runner import run_one
from bench.verify import verify_results


def test_verify_rereads_the_recorded_data_root_or_the_one_given(trees, tmp_path, capsys):
    root = trees.camvid(tmp_path / "cv", h=32, w=48)
    spec = trees.spec()
    results = tmp_path / "results"
    rec = run_one(spec, results=results, device=torch.device("cpu"), data_root=root)
    assert rec["status"] == "ok", rec.get("error")
    assert rec["data_root"] == {"given": str(root), "resolved": str(root.resolve())}
    assert verify_results(results) == {}
    moved = tmp_path / "moved"
    shutil.move(root, moved)
    assert main(["verify", "--results", str(results)]) == 1  # the recorded root is gone
    assert main(["verify", "--results", str(results), "--data-root", str(moved)]) == 0
    assert "verified 1/1" in capsys.readouterr().err
    # a record from before the data root was stored: --data-root is the way to verify it
    path = results / "runs" / f"{rec['run_id']}.json"
    old = json.loads(path.read_text())
    del old["data_root"]
    path.write_text(json.dumps(old))
    assert main(["verify", "--results", str(results), "--data-root", str(moved)]) == 0
