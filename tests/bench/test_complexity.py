import torch
import torchvision
from torch import nn

from bench.complexity import count_madds, count_params


def test_conv_and_linear_madds_by_hand():
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                          nn.Conv2d(8, 8, 3, padding=1, groups=8), nn.Flatten(),
                          nn.Linear(8 * 4 * 4, 10))
    c = count_madds(model, (1, 3, 4, 4))
    expected = 16 * 8 * 3 * 9 + 16 * 8 * 9 + 128 * 10
    assert c.madds == expected
    assert c.effective_madds == expected


def test_matches_torchvision_ops_metadata():
    """torchvision documents `_ops` (GMAdds) for its models; the counter must agree."""
    meta = torchvision.models.ResNet18_Weights.IMAGENET1K_V1.meta
    c = count_madds(torchvision.models.resnet18(), (1, 3, 224, 224))
    assert round(c.madds / 1e9, 3) == meta["_ops"]
    assert c.params == meta["num_params"]


def test_zero_weights_reduce_effective_madds_and_nonzero_params():
    model = nn.Sequential(nn.Conv2d(2, 4, 1, bias=False))
    with torch.no_grad():
        model[0].weight[:2] = 0
    c = count_madds(model, (1, 2, 5, 5))
    assert c.madds == 25 * 4 * 2
    assert c.effective_madds == c.madds // 2
    assert count_params(model) == (8, 4)


def test_counting_leaves_the_model_unchanged():
    model = nn.Sequential(nn.Conv2d(2, 4, 1))
    keys = set(model.state_dict())
    count_madds(model, (1, 2, 3, 3))
    assert set(model.state_dict()) == keys
