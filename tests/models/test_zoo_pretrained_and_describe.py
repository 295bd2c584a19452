"""`pretrained_backbone` never downloads; `describe_models` feeds `python -m bench zoo`."""

from __future__ import annotations

import os

import pytest
import torch
from torchvision.models import ResNet18_Weights

from bench.complexity import count_madds
from models import create_model
from models._common import imagenet_weights
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
    with pytest.raises(RuntimeError, match="not in the local torch hub cache") as e:
        create_model(name, num_classes=3, pretrained_backbone=True)
    assert str(empty_hub / "checkpoints") in str(e.value)  # says where to put the file


def test_cached_weights_are_accepted_without_download(empty_hub):
    w = ResNet18_Weights.IMAGENET1K_V1
    assert imagenet_weights(w, pretrained=False) is None
    (empty_hub / "checkpoints").mkdir()
    (empty_hub / "checkpoints" / os.path.basename(w.url)).write_bytes(b"")
    assert imagenet_weights(w, pretrained=True) is w


def test_cached_weights_are_loaded(empty_hub):
    """A (fake) checkpoint in the hub cache is what the backbone starts from."""
    from torchvision.models import MobileNet_V2_Weights, mobilenet_v2

    torch.manual_seed(1)
    reference = mobilenet_v2().state_dict()
    (empty_hub / "checkpoints").mkdir()
    url = MobileNet_V2_Weights.IMAGENET1K_V1.url
    torch.save(reference, empty_hub / "checkpoints" / os.path.basename(url))
    model = create_model("mobileseg", num_classes=3, pretrained_backbone=True)
    loaded = model.net.encoder.state_dict()
    assert torch.equal(loaded["0.0.weight"], reference["features.0.0.weight"])
    assert torch.equal(loaded["17.conv.2.weight"], reference["features.17.conv.2.weight"])


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
