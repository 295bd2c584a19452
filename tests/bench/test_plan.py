"""`bench run --dry-run`: the grid in the runner's order, what is done or cached, and a
time per run from this machine's records where they exist, the estimate otherwise; and it
runs nothing."""

import json

import torch

from bench.cli import main
from bench.plan import CACHED, DONE, NEW, make_plan
from bench.records import record_path

TINY = ["--budget", "smoke", "--set", "budget.train_images=16", "--set",
        "budget.eval_images=8", "--set", "budget.latency_runs=3", "--set",
        "budget.latency_warmup=1"]


def _run(results, *extra):
    return main(["run", "--method", "fp16", "--model", "enet", "--results", str(results),
                 *TINY, *extra])


def test_dry_run_prints_the_grid_and_runs_nothing(results, capsys):
    assert _run(results, "--seeds", "2", "--dry-run") == 0
    out = capsys.readouterr().out
    waves = [line.split("|")[1].strip() for line in out.splitlines() if line.startswith("| ")]
    assert waves == ["wave", "baseline", "baseline", "run", "run"]
    assert "4 runs, 0 done" in out and "estimate" in out
    assert not (results / "runs").exists() and not (results / "cache" / "baselines").exists()


def test_plan_reads_done_runs_cached_baselines_and_this_machines_records(
        results, make_spec, run_spec):
    # seed 0 ran (its baseline trained now); seed 1's baseline checkpoint is cached
    run_spec(make_spec("none", "enet"))
    run_spec(make_spec("fp16", "enet"))
    base1 = make_spec("none", "enet", seed=1)
    from bench.runner import run_one

    run_one(base1, results=results, device=torch.device("cpu"))
    record_path(results, base1.run_id).unlink()  # the checkpoint stays, the record goes
    specs = [make_spec("fp16", "enet", seed=s) for s in (0, 1, 2)]
    plan = {(p.spec.method, p.spec.seed): p for p in make_plan(specs, results)}
    assert plan[("none", 0)].state == DONE and plan[("fp16", 0)].state == DONE
    assert plan[("none", 1)].state == CACHED and not plan[("none", 1)].trains_baseline
    assert plan[("none", 2)].state == NEW and plan[("none", 2)].trains_baseline
    # fp16 seed 1 is timed from seed 0's record: its own compute, baselines excluded
    rec = json.loads(record_path(results, specs[0].run_id).read_text())
    assert plan[("fp16", 1)].source == "records (1)"
    assert plan[("fp16", 1)].seconds == rec["cost"]["run_s"]
    # a baseline to train: eval from the baseline records, plus the training they carry
    assert plan[("none", 2)].source.startswith("records")
    assert plan[("none", 2)].seconds > plan[("none", 1)].seconds


def test_a_baseline_timed_in_other_runtimes_reuses_the_trained_weights(
        results, make_spec, run_spec):
    """`none` with runtimes is a row of its own (another run id) but trains nothing: the
    plan said "2 baselines to train, 66 min" for a grid whose weights were cached."""
    run_spec(make_spec("none", "enet"))
    timed = make_spec("none", "enet")
    timed.runtimes = ["torch", "onnxruntime"]
    assert timed.run_id != make_spec("none", "enet").run_id
    assert timed.weights_spec().run_id == make_spec("none", "enet").run_id
    (p,) = make_plan([timed], results)
    assert p.state == CACHED and not p.trains_baseline
    fresh = make_spec("none", "enet", seed=3)
    fresh.runtimes = ["torch"]
    (p,) = make_plan([fresh], results)
    assert p.state == NEW and p.trains_baseline


def test_headline_is_one_configuration_per_family():
    from bench.headline import HEADLINE
    from bench.method import expand_methods, families

    built_in = {f for f in families() if not f.startswith("_")}
    assert set(HEADLINE) == built_in  # a new family must choose its headline
    variants = expand_methods("headline")
    assert len(variants) == len(built_in)
    by = {v.label: v for v in variants}
    assert by["prune_structured"].stage_overrides == [{"ratio": 0.5}]
    # --set applies on top, to the stages that have the setting
    by = {v.label: v for v in expand_methods("headline", {"ratio": 0.25})}
    assert by["prune_structured+kd"].stage_overrides[0]["ratio"] == 0.25
    assert len(expand_methods("all")) > 2 * len(variants)  # `all` keeps the full sweeps


def test_the_estimate_follows_the_stages_schedules(make_spec, results):
    """A distiller after pruning fine-tunes (it does not train a fresh student), a cheap
    student trains on the baseline's schedule, a lossless coder trains nothing."""
    from bench.budgets import get_budget
    from bench.tables.estimate import estimate

    quick = get_budget("quick")  # 16 baseline epochs, 3 of fine-tuning

    def static_of(model, kwargs, size):
        return {"madds": 1e9, "dense_size": 1e6}

    def cost(method, **sets):
        return estimate(make_spec(method, "enet", budget=quick, **sets), results, 9,
                        static_of, {make_spec("none", "enet", budget=quick).run_id}).seconds

    kd, pruned_kd = cost("kd"), cost("prune_structured+kd")
    assert pruned_kd < kd / 2
    assert cost("cheapconv") > 5 * cost("huffman")
    assert cost("prune_structured") < pruned_kd


def test_the_estimate_uses_the_best_throughput_this_machine_has_shown(tmp_path,
                                                                      monkeypatch):
    """A busy moment must not stretch the plan: the rate is the best seen (kept in the
    cache), while the one-line summary also says what the host runs at now."""
    from bench.tables import estimate as est

    monkeypatch.setenv("SEGBENCH_DATA_CACHE", str(tmp_path))
    rates = iter([30e9, 3e9])
    monkeypatch.setattr(est, "measured_madds_per_second", lambda: next(rates))
    for expected_now in (30e9, 3e9):
        est.madds_per_second.cache_clear()
        est.now_madds_per_second.cache_clear()
        assert est.madds_per_second() == 30e9
        assert est.now_madds_per_second() == expected_now
    assert list(json.loads((tmp_path / "throughput.json").read_text()).values()) == [30e9]
    est.madds_per_second.cache_clear()
    est.now_madds_per_second.cache_clear()


def _finished(results, spec, run_s):
    """A finished record of `spec` on this machine that took `run_s` of own compute."""
    from bench.plan import _machine
    from bench.records import _OK_METRICS, write_record

    write_record(results, {
        "run_id": spec.run_id, "status": "ok", "model": spec.model, "method": spec.method,
        "dataset": spec.dataset, "budget": spec.budget.name, "seed": spec.seed,
        "config": spec.to_dict(), "metrics": dict.fromkeys(_OK_METRICS, 1.0),
        "env": {"threads": torch.get_num_threads(), "processor": _machine()},
        "cost": {"run_s": run_s, "total_s": run_s}})


def test_a_finished_run_prices_runs_of_its_own_algorithm_only(results, make_spec):
    """A minmax PTQ record priced AdaRound runs too (12 s planned for a 4 min run): runs
    whose stages declare other cost factors (`Method.cost_factor`) do not share records."""
    from bench.plan import RecordTimes

    def own(spec):
        return RecordTimes([results], torch.get_num_threads()).own(spec)

    _finished(results, make_spec("ptq", algorithm="minmax"), 10.0)
    minmax, adaround = (make_spec("ptq", seed=1, algorithm=a) for a in ("minmax", "adaround"))
    assert own(minmax) == (10.0, 1) and own(adaround) is None
    _finished(results, make_spec("ptq", algorithm="adaround"), 200.0)
    assert own(adaround) == (200.0, 1) and own(minmax) == (10.0, 1)


def test_the_estimate_prices_costlier_ptq_algorithms_higher(results, make_spec):
    """Without records, the MAdds estimate scales the run's non-training part by the
    stage's declared cost factor: AdaRound and GPTQ plan longer than minmax, and fewer
    AdaRound iterations plan shorter."""
    specs = {name: make_spec("ptq", **sets) for name, sets in (
        ("minmax", {"algorithm": "minmax"}), ("adaround", {"algorithm": "adaround"}),
        ("gptq", {"algorithm": "gptq"}),
        ("adaround_short", {"algorithm": "adaround", "adaround_iters": 20}))}
    plan = {p.spec.run_id: p for p in make_plan(list(specs.values()), results)}
    secs = {name: plan[s.run_id].seconds for name, s in specs.items()}
    assert all(plan[s.run_id].source == "estimate" for s in specs.values())
    assert secs["adaround"] > secs["minmax"] and secs["gptq"] > secs["minmax"]
    assert secs["minmax"] < secs["adaround_short"] < secs["adaround"]
