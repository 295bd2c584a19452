import torch

from bench.export import load_model


def test_the_control_fine_tunes_the_baseline_as_compressing_methods_do(make_spec, run_spec,
                                                                        results, tiny_budget):
    from bench.baseline import load_cached
    from bench.data import DATASETS
    from models import create_model

    base = run_spec(make_spec("none", "enet"))
    rec = run_spec(make_spec("finetune", "enet"))
    assert rec["status"] == "ok", rec.get("error")
    assert rec["timings"]["finetune_s"] > 0
    log = results / "logs" / f"{rec['run_id']}-finetune.csv"
    assert len(log.read_text().strip().splitlines()) == 1 + tiny_budget.finetune_epochs
    tuned, _, _ = load_model(results / rec["artifact"])
    trained = create_model("enet", num_classes=DATASETS.get("synthetic").num_classes)
    load_cached(trained, results, base["run_id"])
    changed = [k for k, v in tuned.state_dict().items()
               if v.is_floating_point() and not torch.equal(v, trained.state_dict()[k])]
    assert changed  # trained further, same architecture, nothing compressed
    assert rec["metrics"]["params"] == base["metrics"]["params"]
    assert rec["metrics"]["sparsity"] == base["metrics"]["sparsity"]
