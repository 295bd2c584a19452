"""Training precision and layout: recorded settings, part of the run id only when set, so
every run recorded before them keeps its id; bf16 and channels-last train and hand back a
contiguous fp32 model."""

import contextlib
import dataclasses

import pytest
import torch
from torch import nn

from bench.cli import main
from bench.precision import TrainingPrecision, cpu_bf16_native, cpu_bf16_supported
from bench.spec import TrainConfig
from bench.train import train

# what `dataclasses.asdict(TrainConfig())` hashed into every run id before these settings
OLD_DEFAULT_IDENTITY = {"optimizer": "adam", "momentum": 0.9, "weight_decay": 1e-4,
                        "sgd_lr_scale": 50.0, "loss": "ce", "poly_power": 0.9, "amp": True}


def test_a_default_train_config_hashes_as_before(make_spec):
    spec = make_spec("none", "enet")
    assert spec.identity()["train"] == OLD_DEFAULT_IDENTITY
    assert TrainConfig(precision="fp32", channels_last=False).identity() == OLD_DEFAULT_IDENTITY


def test_precision_and_layout_are_part_of_the_run_id(make_spec):
    base = make_spec("none", "enet")
    ids = {base.run_id}
    for change in ({"precision": "bf16"}, {"channels_last": True},
                   {"precision": "bf16", "channels_last": True}):
        spec = dataclasses.replace(base, train=TrainConfig(**change))
        assert spec.identity()["train"] == {**OLD_DEFAULT_IDENTITY, **change}
        ids.add(spec.run_id)
    assert len(ids) == 4


def test_bad_precision_exits_2_naming_the_choices(capsys):
    rc = main(["run", "--method", "none", "--model", "enet", "--set", "train.precision=fp8",
               "--dry-run"])
    assert rc == 2
    assert "bad setting train.precision='fp8'; valid: one of fp32, bf16" in capsys.readouterr().err


@pytest.mark.filterwarnings("ignore:.*CUDA is not available")
def test_fp32_on_the_cpu_does_not_autocast_and_fp16_amp_stays_a_cuda_setting():
    cpu = TrainingPrecision("fp32", False, True, torch.device("cpu"))
    assert cpu.dtype is None and not cpu.scaler.is_enabled()
    cuda = TrainingPrecision("fp32", False, True, torch.device("cuda"))
    assert cuda.dtype is torch.float16
    assert TrainingPrecision("bf16", False, True, torch.device("cuda")).dtype is torch.bfloat16


class _Data(torch.utils.data.Dataset):
    def __len__(self):
        return 8

    def __getitem__(self, i):
        x = torch.randn(3, 16, 16, generator=torch.Generator().manual_seed(i))
        return x, x.argmax(0)


@pytest.mark.skipif(not cpu_bf16_supported(), reason="this CPU has no bf16 kernels")
def test_bf16_channels_last_training_learns_and_returns_a_contiguous_fp32_model():
    torch.manual_seed(0)
    m = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
                      nn.Conv2d(16, 3, 1))
    seen = []
    m.register_forward_hook(lambda mod, inp, out: seen.append((out.dtype, inp[0])))
    emulated = not cpu_bf16_native()  # then a warning says it may be slower than fp32
    with pytest.warns(UserWarning, match="emulates") if emulated else contextlib.nullcontext():
        out = train(m, _Data(), epochs=4, lr=0.05, batch_size=4,
                    cfg=TrainConfig(precision="bf16", channels_last=True),
                    device=torch.device("cpu"), ignore_index=255, seed=0)
    dtype, x = seen[0]
    assert dtype is torch.bfloat16 and x.is_contiguous(memory_format=torch.channels_last)
    assert out["autocast"] == "bfloat16" and out["channels_last"]
    assert out["final_loss"] < 1.0  # learns the argmax task (chance: ln 3 = 1.10)
    assert all(p.dtype is torch.float32 and p.is_contiguous() for p in m.parameters())
