"""Model -> artifact -> model: the round trip is exact bit for bit, signed zeros included."""

import torch

from bench.export import export_model, load_model, stage_problems, unsign_zeros
from bench.facts import FactLog
from bench.method import METHODS, Stage
from methods.huffman import state_digest


class _Ctx(FactLog):
    """What k-means reads of a run: the input shape, the seed; and where it reports."""

    def __init__(self, input_shape):
        super().__init__()
        self.input_shape, self.seed = input_shape, 0


def _with_negative_zeros(model: torch.nn.Module) -> int:
    """Set a few weights of every conv to -0.0 beside a few +0.0, as training with flushed
    denormals does."""
    n = 0
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.Conv2d) and m.weight.numel() >= 6:
                m.weight.view(-1)[:3] = -0.0
                m.weight.view(-1)[3:6] = 0.0
                n += 3
    return n


def test_negative_zeros_become_positive_and_nothing_else_changes():
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    assert unsign_zeros(model) == 0
    assert _with_negative_zeros(model) == 3
    assert unsign_zeros(model) == 3
    w = model[0].weight.view(-1)
    assert not torch.signbit(w[:6]).any() and (w[:6] == 0).all()
    assert torch.equal(w[6:], before["0.weight"].view(-1)[6:])
    assert unsign_zeros(model) == 0


def test_kmeans_then_huffman_round_trips_a_state_with_negative_zeros(tmp_path):
    """The CamVid ENet deep_compression run failed its huffman check on exactly this."""
    from models import create_model

    model = create_model("enet", num_classes=5).eval()
    kmeans = METHODS.get("kmeans")(METHODS.get("kmeans").Config(bits=4))
    ctx = _Ctx((1, 3, 64, 64))
    _with_negative_zeros(model)  # zeros, so every codebook holds 0
    kmeans.compress(ctx, model)
    model = kmeans.finalize(ctx, model)
    assert _with_negative_zeros(model) > 0
    stages = [Stage(kmeans), Stage(METHODS.get("huffman")())]
    path = export_model(model, tmp_path / "m", model_name="enet", num_classes=5,
                        model_kwargs={}, stages=stages, ctx=ctx)
    loaded, header, loaded_stages = load_model(path)
    assert stage_problems(loaded, header, loaded_stages) == []
    assert state_digest(loaded) == state_digest(model)
    x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))
