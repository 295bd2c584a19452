import math

import pytest
import torch
from torch import nn

from bench.spec import TrainConfig
from bench.train import iou_loss, poly_lr, train


class _Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 3, 1))

    def forward(self, x):
        return self.net(x)


class _Data(torch.utils.data.Dataset):
    def __len__(self):
        return 8

    def __getitem__(self, i):
        g = torch.Generator().manual_seed(i)
        x = torch.randn(3, 8, 8, generator=g)
        return x, (x.argmax(0))


def _train(seed=0, **cfg):
    torch.manual_seed(123)
    m = _Tiny()
    out = train(m, _Data(), epochs=2, lr=0.1, batch_size=4, cfg=TrainConfig(**cfg),
                device=torch.device("cpu"), ignore_index=255, seed=seed)
    return m, out


def test_training_is_deterministic_on_cpu():
    a, _ = _train()
    b, _ = _train()
    for pa, pb in zip(a.parameters(), b.parameters()):
        assert torch.equal(pa, pb)


@pytest.mark.parametrize("loss", ["ce", "iou", "ce+iou"])
@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_losses_and_optimizers_reduce_loss(loss, optimizer):
    torch.manual_seed(0)
    m = _Tiny()
    data = _Data()
    x = torch.stack([data[i][0] for i in range(8)])
    y = torch.stack([data[i][1] for i in range(8)])
    before = iou_loss(m(x), y, 255).item()
    train(m, data, epochs=15, lr=0.02, batch_size=4, cfg=TrainConfig(loss=loss, optimizer=optimizer,
          sgd_lr_scale=10), device=torch.device("cpu"), ignore_index=255, seed=0)
    assert iou_loss(m(x), y, 255).item() < before


def test_iou_loss_is_zero_for_perfect_confident_predictions_and_ignores_pixels():
    y = torch.tensor([[[0, 1], [1, 255]]])
    logits = torch.full((1, 2, 2, 2), -50.0)
    logits[0, 0, 0, 0] = logits[0, 1, 0, 1] = logits[0, 1, 1, 0] = 50.0
    assert iou_loss(logits, y, 255).item() == pytest.approx(0.0, abs=1e-6)
    wrong = logits.flip(1)
    assert iou_loss(wrong, y, 255).item() == pytest.approx(1.0, abs=1e-6)


def test_poly_schedule():
    assert poly_lr(0.1, 0, 100, 0.9) == 0.1
    assert math.isclose(poly_lr(0.1, 50, 100, 0.9), 0.1 * 0.5**0.9)
    assert poly_lr(0.1, 99, 100, 0.9) > 0


def test_epoch_csv_log(tmp_path):
    m = _Tiny()
    train(m, _Data(), epochs=2, lr=0.1, batch_size=4, cfg=TrainConfig(),
          device=torch.device("cpu"), ignore_index=255, seed=0, log_csv=tmp_path / "log.csv")
    rows = (tmp_path / "log.csv").read_text().splitlines()
    assert rows[0] == "epoch,loss,lr,seconds" and len(rows) == 3
