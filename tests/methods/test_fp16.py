from pathlib import Path

from bench.export import load_model


def test_fp16_halves_the_artifact_and_verifies(make_spec, run_spec, results):
    base = run_spec(make_spec("none", "enet"))
    rec = run_spec(make_spec("fp16", "enet"))
    assert rec["status"] == "ok", rec.get("error")
    ratio = rec["metrics"]["compression_ratio"]
    assert 1.9 < ratio < 2.01
    model, header, stages = load_model(results / rec["artifact"])
    assert stages[0].method.check(model, {}) == []
    assert abs(rec["metrics"]["miou"] - base["metrics"]["miou"]) < 0.02


def test_the_guide_walks_through_this_very_file():
    """docs/adding-a-method.md's complete plugin must be real, working code."""
    guide = (Path(__file__).parents[2] / "docs" / "adding-a-method.md").read_text()
    source = (Path(__file__).parents[2] / "methods" / "fp16.py").read_text()
    body = source.split('"""', 2)[2].strip()
    assert body in guide
