"""The runner's contract: records with the documented keys, resume without retraining,
failures recorded while the grid goes on, corrupt caches retrained, Ctrl-C safe."""

import json
from dataclasses import dataclass

import pytest
import torch

from bench.baseline import cache_paths
from bench.config import Settings
from bench.export import load_model
from bench.leaderboard import write_leaderboard
from bench.method import METHODS, Method, NotApplicable, register_method
from bench.records import iter_records, read_record
from bench.runner import run_grid

REQUIRED = {"run_id", "status", "model", "method", "dataset", "budget", "seed", "config",
            "baseline_run_id", "env", "timings", "metrics", "artifact"}
METRICS = {"miou", "pixel_acc", "per_class_iou", "params", "nonzero_params", "madds",
           "effective_madds", "size_bytes", "dense_size_bytes", "compression_ratio",
           "latency_ms", "latency_iqr_ms"}


@pytest.fixture(scope="module")
def boom_method():
    METHODS.names()

    @dataclass
    class Cfg(Settings):
        kind: str = "error"

    @register_method("_test_boom", family="_test")
    class Boom(Method):
        Config = Cfg

        calls: list[str] = []

        def compress(self, ctx, model):
            self.calls.append(self.config.kind)
            if self.config.kind == "interrupt":
                raise KeyboardInterrupt
            if self.config.kind == "not_applicable":
                raise NotApplicable("layer set 'x' needs an ASPP; valid layer sets: output")
            raise RuntimeError("boom: this method always fails")

    yield Boom
    METHODS._items.pop("_test_boom")


def test_baseline_run_writes_a_complete_record_and_a_loadable_artifact(make_spec, results,
                                                                      run_spec):
    rec = run_spec(make_spec("none", "enet"))
    assert rec["status"] == "ok", rec.get("error")
    assert REQUIRED <= set(rec)
    assert METRICS <= set(rec["metrics"])
    assert {"torch", "device", "threads", "git_revision"} <= set(rec["env"])
    assert len(rec["metrics"]["per_class_iou"]) == 9
    assert rec["baseline_run_id"] == rec["run_id"]
    path = results / rec["artifact"]
    assert path.stat().st_size == rec["metrics"]["size_bytes"]
    assert rec["metrics"]["compression_ratio"] == pytest.approx(1.0, rel=1e-3)
    model, header, _ = load_model(path)
    assert header["model"]["name"] == "enet"
    assert sum(p.numel() for p in model.parameters()) == rec["metrics"]["params"]
    on_disk = json.loads((results / "runs" / f"{rec['run_id']}.json").read_text())
    assert on_disk["metrics"]["miou"] == rec["metrics"]["miou"]


def test_rerun_resumes_without_training_or_writing(make_spec, results):
    spec = make_spec("none", "enet")
    (r1,) = run_grid([spec], results=results, device=torch.device("cpu"))
    files = {p: p.stat().st_mtime_ns for p in results.rglob("*") if p.is_file()}
    (r2,) = run_grid([spec], results=results, device=torch.device("cpu"))
    assert r2 == r1
    assert {p: p.stat().st_mtime_ns for p in results.rglob("*") if p.is_file()} == files


def test_failed_run_is_recorded_and_the_grid_goes_on(make_spec, results, boom_method):
    specs = [make_spec("_test_boom", "enet"), make_spec("none", "enet", seed=1)]
    records = run_grid(specs, results=results, device=torch.device("cpu"))
    by_method = {(r["method"], r["seed"]): r for r in records}
    failed = by_method[("_test_boom", 0)]
    assert failed["status"] == "failed"
    assert "boom: this method always fails" in failed["error"]
    assert by_method[("none", 1)]["status"] == "ok"
    assert read_record(results, failed["run_id"])["status"] == "failed"


def test_not_applicable_is_its_own_status_kept_on_rerun(make_spec, results, boom_method):
    """A run asking for what the model lacks is not a failure and is not retried; a failed
    run is retried."""
    na = make_spec("_test_boom", "enet", kind="not_applicable")
    bad = make_spec("_test_boom", "enet")
    boom_method.calls.clear()
    recs = {r["run_id"]: r for r in run_grid([na, bad], results=results,
                                              device=torch.device("cpu"))}
    assert recs[na.run_id]["status"] == "not applicable"
    assert recs[na.run_id]["error"] == "layer set 'x' needs an ASPP; valid layer sets: output"
    assert "traceback" not in recs[na.run_id]
    assert recs[bad.run_id]["status"] == "failed"
    assert sorted(boom_method.calls) == ["error", "not_applicable"]
    run_grid([na, bad], results=results, device=torch.device("cpu"))
    assert sorted(boom_method.calls) == ["error", "error", "not_applicable"]
    md = write_leaderboard(results)[0].read_text()
    assert "## failed, not applicable and stale runs" in md
    na_line = next(line for line in md.splitlines() if na.run_id in line)
    assert "not applicable" in na_line and "needs an ASPP" in na_line


@pytest.fixture
def liar_method():
    """A stage whose artifact does not hold what it declares (its check always objects)."""
    METHODS.names()

    @register_method("_test_liar", family="_test")
    class Liar(Method):
        def check(self, model, meta):
            return ["declared 90 % zeros, found none"]

    yield
    METHODS._items.pop("_test_liar")


def test_an_artifact_failing_its_stage_checks_fails_the_run(make_spec, results, liar_method):
    records = run_grid([make_spec("_test_liar", "enet")], results=results,
                       device=torch.device("cpu"))
    (rec,) = [r for r in records if r["method"] == "_test_liar"]
    assert rec["status"] == "failed"
    assert "fails its stages' checks" in rec["error"]
    assert "_test_liar: declared 90 % zeros, found none" in rec["error"]


def test_interrupt_keeps_finished_runs(make_spec, results, boom_method):
    ok = make_spec("none", "enet")
    stop = make_spec("_test_boom", "enet", kind="interrupt")
    with pytest.raises(KeyboardInterrupt):
        run_grid([ok, stop], results=results, device=torch.device("cpu"))
    recs = list(iter_records(results))
    assert [r["method"] for r in recs] == ["none"] and recs[0]["status"] == "ok"
    assert not list((results / "runs").glob("*.tmp"))


def test_corrupt_cached_baseline_is_retrained(make_spec, results, run_spec, capsys):
    spec = make_spec("none", "enet")
    first = run_spec(spec)
    ckpt, side = cache_paths(results, spec.run_id)
    data = bytearray(ckpt.read_bytes())
    data[len(data) // 2] ^= 0xFF
    ckpt.write_bytes(bytes(data))
    (results / "runs" / f"{spec.run_id}.json").unlink()
    second = run_spec(spec)
    assert "corrupt" in capsys.readouterr().err
    assert second["baseline"]["trained_now"] is True
    # retraining is deterministic on the CPU: same weights, same score
    assert second["metrics"]["miou"] == first["metrics"]["miou"]
    assert json.loads(side.read_text())["sha256"] == second["baseline"]["sha256"]


def test_run_id_ignores_device_but_not_config(make_spec):
    a, b = make_spec("none", "enet"), make_spec("none", "enet", seed=1)
    assert a.run_id != b.run_id
    assert a.run_id == make_spec("none", "enet").run_id
    c = make_spec("none", "enet", model_kwargs={"x": 1})
    assert c.run_id != a.run_id


def test_spec_round_trips_and_refuses_fields_it_does_not_know(make_spec):
    from bench.registry import UnknownNameError
    from bench.spec import spec_from_dict

    spec = make_spec("none")
    d = json.loads(json.dumps(spec.to_dict()))
    assert spec_from_dict(d).run_id == spec.run_id
    d["train"]["adam_lr_scale"] = 0.02  # a field an older version wrote
    with pytest.raises(UnknownNameError, match="adam_lr_scale.*re-run"):
        spec_from_dict(d)


def test_a_new_dataset_version_changes_run_ids_and_refuses_old_records(make_spec,
                                                                       monkeypatch):
    import dataclasses

    from bench.data import DATASETS
    from bench.registry import UnknownNameError
    from bench.spec import spec_from_dict

    spec = make_spec("none")
    old, old_id = json.loads(json.dumps(spec.to_dict())), spec.run_id
    info = DATASETS.get(spec.dataset)
    monkeypatch.setitem(DATASETS._items, spec.dataset,
                        dataclasses.replace(info, version=info.version + "-next"))
    assert spec.run_id != old_id  # the old record is not resumed
    with pytest.raises(UnknownNameError, match=r"version .*-next.*re-run"):
        spec_from_dict(old)
