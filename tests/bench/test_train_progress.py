"""Training progress when stderr is not a terminal (a log file, CI, nohup)."""

import torch

import bench.train as tr
from bench.budgets import get_budget
from bench.data import DATASETS
from bench.spec import TrainConfig
from models import create_model


def test_a_progress_line_per_epoch_when_stderr_is_not_a_terminal(capsys, monkeypatch):
    """A 33-minute baseline printed nothing with output not a terminal (tqdm disables
    itself there); one line per epoch says how far it is and how long is left."""
    monkeypatch.setattr(tr, "PROGRESS_EVERY_S", 0.0)
    budget = get_budget("smoke", {"train_images": 8, "crop_size": 32})
    ds = DATASETS.get("synthetic").builder("train", None, budget, 0, True)
    tr.train(create_model("enet", num_classes=9), ds, epochs=2, lr=1e-3, batch_size=8,
             cfg=TrainConfig(), device=torch.device("cpu"), ignore_index=255, seed=0,
             desc="baseline enet")
    lines = [x for x in capsys.readouterr().err.splitlines() if x.startswith("baseline enet")]
    assert [x.split()[3] for x in lines] == ["1/2", "2/2"]
    assert "left ~0s" in lines[-1]


def test_progress_lines_are_throttled_but_the_last_epoch_always_prints(capsys, monkeypatch):
    monkeypatch.setattr(tr, "PROGRESS_EVERY_S", 1e9)
    last = float("-inf")
    for epoch in range(1, 5):
        last = tr.progress_line("train", epoch, 4, 0.5, float(epoch), last)
    lines = capsys.readouterr().err.splitlines()
    assert [x.split()[2] for x in lines] == ["1/4", "4/4"]
