"""`pretrained_backbone` never downloads (loading, hash check and no-pickle:
test_pretrained_no_pickle.py); `describe_models` feeds `python -m bench zoo`."""

from __future__ import annotations

import pytest
import torch

from bench.complexity import count_madds
from models import create_model
from models.describe import describe_models, main

BACKBONED = [
    "linknet",
    "fastlinknet",
    "mobileseg",
    "segnet",
    "fcn8s_vgg16",
    "fcn_resnet50",
    "lraspp_mobilenetv3",
    "deeplabv3plus_resnet50",
    "deeplabv3plus_mobilenetv2",
]


@pytest.fixture
def empty_hub(tmp_path):
    old = torch.hub.get_dir()
    torch.hub.set_dir(str(tmp_path))
    yield tmp_path
    torch.hub.set_dir(old)


@pytest.mark.parametrize("name", BACKBONED)
def test_pretrained_backbone_without_cached_weights_raises_clearly(name, empty_hub):
    with pytest.raises(RuntimeError, match="nor in the local torch hub cache") as e:
        create_model(name, num_classes=3, pretrained_backbone=True)
    assert str(empty_hub / "checkpoints") in str(e.value)  # says where to put the file


def test_describe_models_rows():
    rows = describe_models(["enet", "unet_small"], (64, 64), num_classes=9)
    keys = {
        "name",
        "paper",
        "year",
        "params",
        "madds_g",
        "published_params",
        "output_stride",
        "input_size",
    }
    assert [r["name"] for r in rows] == ["enet", "unet_small"]
    for r in rows:
        assert keys <= set(r) and r["input_size"] == (64, 64)
        c = count_madds(create_model(r["name"], num_classes=9), (1, 3, 64, 64))
        assert (r["params"], r["madds_g"]) == (c.params, c.madds / 1e9)
    assert rows[0]["published_params"] == 370_000 and rows[1]["published_params"] is None


def test_describe_cli(capsys):
    assert main(["--size", "32x48", "--classes", "4", "enet"]) == 0
    out = capsys.readouterr().out
    assert "enet" in out and "GMAdds @32x48" in out
