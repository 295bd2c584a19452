"""Executors: baselines (teachers included) run in a first wave; the Ray executor writes
the same records as the local one; a dead worker loses only its own run."""

import os
import sys
from pathlib import Path

import pytest
import torch

from bench.executors import run_specs
from bench.method import METHODS, Method, register_method
from bench.records import iter_records
from bench.runner import waves

HERE = Path(__file__).parent


@pytest.fixture(scope="module")
def teacher_method():
    METHODS.names()

    @register_method("_test_teacher", family="_test")
    class UsesTeacher(Method):
        def baselines_needed(self, model, model_kwargs):
            return [("unet_small", {})]

    yield
    METHODS._items.pop("_test_teacher")


def test_waves_put_every_baseline_first_including_teachers(make_spec, teacher_method):
    specs = [make_spec("_test_teacher", "enet"), make_spec("fp16", "enet")]
    first, second = waves(specs)
    assert sorted((s.model, s.method) for s in first) == [("enet", "none"), ("unet_small", "none")]
    assert [s.method for s in second] == ["_test_teacher", "fp16"]
    # the teacher's baseline is the same run (same id) a standalone baseline would be
    assert {s.run_id for s in first} >= {make_spec("none", "unet_small").run_id}


def test_unknown_executor_is_rejected(make_spec, results):
    with pytest.raises(ValueError, match="valid choices: local, ray"):
        run_specs([make_spec()], executor="slurm", results=results)


@pytest.fixture(scope="module")
def ray_local():
    ray = pytest.importorskip("ray")
    sys.path.insert(0, str(HERE))
    import _ray_plugins

    _ray_plugins.setup()
    path = os.pathsep.join([str(HERE), str(HERE.parents[1])])
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"PYTHONPATH": path, "OMP_NUM_THREADS": "1",
                                       "SEGBENCH_DATA_CACHE": os.environ["SEGBENCH_DATA_CACHE"]},
                          "worker_process_setup_hook": "_ray_plugins.setup"})
    yield ray
    ray.shutdown()
    METHODS._items.pop("_test_crash", None)
    sys.path.remove(str(HERE))


def test_ray_executor_matches_local_and_survives_a_dead_worker(ray_local, make_spec, tmp_path):
    specs = [make_spec("fp16", "enet"), make_spec("_test_crash", "enet")]
    ray_recs = run_specs(specs, executor="ray", results=tmp_path / "ray", threads=1)
    by = {r["method"]: r for r in ray_recs}
    assert by["_test_crash"]["status"] == "failed"
    assert "worker lost" in by["_test_crash"]["error"]
    assert by["fp16"]["status"] == "ok" and by["none"]["status"] == "ok"
    torch.set_num_threads(1)
    local = run_specs(specs[:1], executor="local", results=tmp_path / "local", threads=1)
    lby = {r["method"]: r for r in local}
    for m in ("none", "fp16"):
        assert lby[m]["run_id"] == by[m]["run_id"]
        assert lby[m]["metrics"]["miou"] == by[m]["metrics"]["miou"]
        assert lby[m]["metrics"]["size_bytes"] == by[m]["metrics"]["size_bytes"]
    # gathered into the results directory; a re-run resumes and retries only the failure
    assert {r["method"] for r in iter_records(tmp_path / "ray")} == {"none", "fp16", "_test_crash"}
    again = run_specs(specs[:1], executor="ray", results=tmp_path / "ray", threads=1)
    assert [r["finished"] for r in again] == [by["none"]["finished"], by["fp16"]["finished"]]


def test_gathering_a_lost_worker_keeps_a_run_another_process_finished(make_spec, results,
                                                                     monkeypatch):
    """The Ray driver writes records under the run's lock, and a worker's failure never
    overwrites the record of a process that finished the same run meanwhile."""
    from bench import executors
    from bench.records import read_record
    from bench.runner import base_record, run_claimed

    spec = make_spec("none", "enet")
    done = run_claimed(spec, results=results, device=torch.device("cpu"))
    assert done["status"] == "ok"
    taken = []
    real = executors.locked

    def spy(res, kind, key):
        taken.append((kind, key))
        return real(res, kind, key)

    monkeypatch.setattr(executors, "locked", spy)
    lost = {**base_record(spec, torch.device("cpu")), "status": "failed", "error": "worker lost"}
    assert executors.gather(results, spec, lost)["status"] == "ok"
    assert read_record(results, spec.run_id)["finished"] == done["finished"]
    assert taken == [("run", spec.run_id)]
    fresh = make_spec("fp16", "enet")
    rec = {**base_record(fresh, torch.device("cpu")), "status": "failed", "error": "worker lost"}
    assert executors.gather(results, fresh, rec) is rec
    assert read_record(results, fresh.run_id)["status"] == "failed"
