"""ImageNet backbone weights are data, never code: a file in the weights directory or the
torch hub cache loads only if its SHA-256 starts with the prefix torchvision publishes in
its name, and only with `torch.load(weights_only=True)`; a planted pickle payload never
runs (its marker file never appears)."""

from __future__ import annotations

import hashlib
import os
import types

import pytest
import torch
from torch import nn
from torchvision.models import MobileNet_V2_Weights, ResNet18_Weights, mobilenet_v2

from models import _common, create_model
from models._common import imagenet_state_dict, load_imagenet


class _Payload:
    """Unpickling this calls `open(marker, "w")`: what a planted checkpoint could run."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _plant_pickle(path, marker) -> None:
    torch.save({"conv1.weight": _Payload(str(marker))}, path)


@pytest.fixture
def hub(tmp_path, monkeypatch):
    """An empty torch hub cache and no $SEGBENCH_WEIGHTS_DIR."""
    monkeypatch.delenv(_common.WEIGHTS_DIR_ENV, raising=False)
    old = torch.hub.get_dir()
    torch.hub.set_dir(str(tmp_path / "hub"))
    (tmp_path / "hub" / "checkpoints").mkdir(parents=True)
    yield tmp_path / "hub" / "checkpoints"
    torch.hub.set_dir(old)


def _named_by_hash(directory, stem: str, write) -> types.SimpleNamespace:
    """Write a file with `write(path)`, rename it `<stem>-<its sha256 prefix>.pth` (as
    torchvision names its files) and return a weights object whose url names it."""
    tmp = directory / "tmp.pth"
    write(tmp)
    prefix = hashlib.sha256(tmp.read_bytes()).hexdigest()[:8]
    name = f"{stem}-{prefix}.pth"
    tmp.rename(directory / name)
    return types.SimpleNamespace(url=f"https://download.pytorch.org/models/{name}")


def test_a_planted_pickle_in_the_hub_cache_never_runs(hub, tmp_path):
    """torchvision's file name, pickle payload inside: refused by the hash check."""
    marker = tmp_path / "pwned"
    _plant_pickle(hub / os.path.basename(ResNet18_Weights.IMAGENET1K_V1.url), marker)
    with pytest.raises(RuntimeError, match="SHA-256 does not start with f37072fd"):
        create_model("linknet", num_classes=3, pretrained_backbone=True)
    assert not marker.exists()


def test_a_pickle_payload_with_a_matching_hash_is_still_refused(hub, tmp_path):
    """Even a file whose name carries its own hash is loaded without unpickling objects."""
    marker = tmp_path / "pwned"
    weights = _named_by_hash(hub, "evil", lambda p: _plant_pickle(p, marker))
    with pytest.raises(RuntimeError, match="not a plain tensor checkpoint"):
        imagenet_state_dict(weights)
    assert not marker.exists()


def test_a_file_without_a_hash_prefix_is_refused(hub):
    torch.save({"w": torch.ones(1)}, hub / "plain.pth")
    with pytest.raises(RuntimeError, match="no torchvision hash prefix"):
        imagenet_state_dict(types.SimpleNamespace(url="https://x/plain.pth"))


def test_weights_dir_is_searched_before_the_hub_cache(hub, tmp_path, monkeypatch):
    own = tmp_path / "weights"
    own.mkdir()
    w = _named_by_hash(own, "lin", lambda p: torch.save(nn.Linear(2, 3).state_dict(), p))
    with pytest.raises(RuntimeError, match="SEGBENCH_WEIGHTS_DIR"):
        imagenet_state_dict(w)  # not in the hub cache, directory not named
    monkeypatch.setenv(_common.WEIGHTS_DIR_ENV, str(own))
    target = nn.Linear(2, 3)
    load_imagenet(target, w)
    assert torch.equal(target.weight, torch.load(own / os.path.basename(w.url))["weight"])


def test_a_backbone_starts_from_the_verified_file(hub, monkeypatch):
    """The wiring: mobileseg's encoder holds exactly the (hash-checked) file's tensors."""
    torch.manual_seed(1)
    reference = mobilenet_v2().state_dict()
    fake = _named_by_hash(hub, "mobilenet_v2", lambda p: torch.save(reference, p))
    real = MobileNet_V2_Weights.IMAGENET1K_V1
    monkeypatch.setattr(_common, "_file_name",
                        lambda w: os.path.basename(fake.url) if w is real else
                        os.path.basename(w.url))
    model = create_model("mobileseg", num_classes=3, pretrained_backbone=True)
    loaded = model.net.encoder.state_dict()
    assert torch.equal(loaded["0.0.weight"], reference["features.0.0.weight"])
    assert torch.equal(loaded["17.conv.2.weight"], reference["features.17.conv.2.weight"])


def test_a_file_missing_backbone_tensors_is_refused(hub):
    w = _named_by_hash(hub, "half", lambda p: torch.save({"weight": torch.ones(3, 2)}, p))
    with pytest.raises(RuntimeError, match="lacks 1 tensor"):
        load_imagenet(nn.Linear(2, 3), w)
