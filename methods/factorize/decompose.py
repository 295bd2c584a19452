"""A convolution replaced by a chain of smaller ones whose composition approximates it.

Three schemes, each exact at full rank (tests/methods/test_lowrank.py):

* `spatial` (Jaderberg, Vedaldi & Zisserman 2014, scheme 2; AIMET's spatial SVD): a kh x kw
  conv C_in -> C_out becomes a kh x 1 conv C_in -> r then a 1 x kw conv r -> C_out. The
  weight rearranged as a (C_in*kh) x (C_out*kw) matrix is split by its SVD. The vertical
  conv takes the stride, padding and dilation along H, the horizontal one those along W;
  only the last factor carries the bias, so zero padding composes exactly.
* `channel` (AIMET's channel/weight SVD; Zhang et al. 2016): a conv with the original kernel
  C_in -> r then a 1 x 1 conv r -> C_out, from the SVD of the C_out x (C_in*kh*kw) matrix.
  For 1 x 1 (and kh x 1) convolutions it is the only scheme.
* `tucker` (Tucker-2; Kim et al. 2016): 1 x 1 C_in -> r_in, the kh x kw core r_in -> r_out,
  1 x 1 r_out -> C_out, from the truncated HOSVD of the two channel modes.

`factor_convs` builds the factors' shapes alone, which is what the artifact's loader needs
before the stored weights arrive; `factorize` builds them and fills them from the weights.
"""

from __future__ import annotations

import torch
from torch import nn

SCHEMES = ("spatial", "channel", "tucker")


class FactorizedConv(nn.Sequential):
    """The factor convolutions of one layer, applied in order. `scheme` and `ranks` are
    what the artifact records; the weights live in the children (`0`, `1`, `2`)."""

    def __init__(self, scheme: str, ranks: tuple[int, ...], convs: list[nn.Conv2d]):
        super().__init__(*convs)
        self.scheme = scheme
        self.ranks = tuple(int(r) for r in ranks)

    def extra_repr(self) -> str:
        return f"scheme={self.scheme}, ranks={self.ranks}"


def pairs(conv: nn.Conv2d) -> tuple[tuple[int, int], ...]:
    return (tuple(conv.kernel_size), tuple(conv.stride), tuple(conv.padding),
            tuple(conv.dilation))


def eligible(conv: nn.Module) -> str | None:
    """Why this layer cannot be factorised, or None if it can."""
    if type(conv) is not nn.Conv2d:
        return f"{type(conv).__name__} is not a plain Conv2d"
    if conv.groups != 1:
        return "grouped/depthwise convolution"
    if conv.padding_mode != "zeros":
        return f"padding mode {conv.padding_mode!r} (only zero padding composes exactly)"
    if isinstance(conv.padding, str):
        return f"padding {conv.padding!r} given as a string"
    return None


def scheme_for(conv: nn.Conv2d, kxk: str) -> str:
    """`kxk` for a kernel that is at least 2 in both directions, `channel` otherwise."""
    kh, kw = conv.kernel_size
    return kxk if kh > 1 and kw > 1 else "channel"


def rank_limits(conv: nn.Conv2d, scheme: str) -> tuple[int, ...]:
    """The full rank(s) of a scheme: at these the factorisation is exact."""
    o, i, kh, kw = conv.weight.shape
    if scheme == "spatial":
        return (min(i * kh, o * kw),)
    if scheme == "channel":
        return (min(o, i * kh * kw),)
    if scheme == "tucker":
        return (min(i, o * kh * kw), min(o, i * kh * kw))
    raise ValueError(f"unknown scheme {scheme!r}; valid: {', '.join(SCHEMES)}")


def factor_convs(conv: nn.Conv2d, scheme: str, ranks: tuple[int, ...]) -> list[nn.Conv2d]:
    """Empty factor convolutions of `conv` at `ranks` (one rank; two for tucker)."""
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = pairs(conv)
    i, o, bias = conv.in_channels, conv.out_channels, conv.bias is not None
    kw_ = {"device": conv.weight.device, "dtype": conv.weight.dtype}
    if len(ranks) != len(rank_limits(conv, scheme)) or min(ranks) < 1:
        raise ValueError(f"scheme {scheme} needs {len(rank_limits(conv, scheme))} "
                         f"positive rank(s), got {list(ranks)}")
    if scheme == "spatial":
        (r,) = ranks
        return [nn.Conv2d(i, r, (kh, 1), (sh, 1), (ph, 0), (dh, 1), bias=False, **kw_),
                nn.Conv2d(r, o, (1, kw), (1, sw), (0, pw), (1, dw), bias=bias, **kw_)]
    if scheme == "channel":
        (r,) = ranks
        return [nn.Conv2d(i, r, (kh, kw), (sh, sw), (ph, pw), (dh, dw), bias=False, **kw_),
                nn.Conv2d(r, o, 1, bias=bias, **kw_)]
    r_in, r_out = ranks
    return [nn.Conv2d(i, r_in, 1, bias=False, **kw_),
            nn.Conv2d(r_in, r_out, (kh, kw), (sh, sw), (ph, pw), (dh, dw), bias=False, **kw_),
            nn.Conv2d(r_out, o, 1, bias=bias, **kw_)]


def _matrix(w: torch.Tensor, scheme: str) -> torch.Tensor:
    o, i, kh, kw = w.shape
    if scheme == "spatial":  # rows (C_in, y), columns (C_out, x)
        return w.permute(1, 2, 0, 3).reshape(i * kh, o * kw)
    return w.reshape(o, i * kh * kw)  # channel


def spectra(conv: nn.Conv2d, scheme: str) -> tuple[torch.Tensor, ...]:
    """Singular values that decide each rank (float64, descending): one spectrum, or the
    input- and output-channel modes' for tucker."""
    w = conv.weight.detach().double().cpu()
    if scheme == "tucker":
        o, i = w.shape[:2]
        return (torch.linalg.svdvals(w.transpose(0, 1).reshape(i, -1)),
                torch.linalg.svdvals(w.reshape(o, -1)))
    return (torch.linalg.svdvals(_matrix(w, scheme)),)


@torch.no_grad()
def factorize(conv: nn.Conv2d, scheme: str, ranks: tuple[int, ...]) -> FactorizedConv:
    """The factors of `conv` at `ranks`, filled with the truncated decomposition (the best
    rank-r approximation of the rearranged weight for spatial/channel, HOSVD for tucker)."""
    limits = rank_limits(conv, scheme)
    ranks = tuple(min(int(r), lim) for r, lim in zip(ranks, limits))
    convs = factor_convs(conv, scheme, ranks)
    w = conv.weight.detach().double()
    o, i, kh, kw = w.shape
    if scheme in ("spatial", "channel"):
        (r,) = ranks
        u, s, vh = torch.linalg.svd(_matrix(w, scheme), full_matrices=False)
        root = s[:r].sqrt()
        left, right = u[:, :r] * root, vh[:r] * root[:, None]
        if scheme == "spatial":  # left: (C_in*kh, r), right: (r, C_out*kw)
            first = left.T.reshape(r, i, kh, 1)
            second = right.reshape(r, o, kw).permute(1, 0, 2).reshape(o, r, 1, kw)
        else:  # left: (C_out, r), right: (r, C_in*kh*kw)
            first = right.reshape(r, i, kh, kw)
            second = left.reshape(o, r, 1, 1)
        weights = [first, second]
    else:
        r_in, r_out = ranks
        u_in = torch.linalg.svd(w.transpose(0, 1).reshape(i, -1), full_matrices=False)[0]
        u_out = torch.linalg.svd(w.reshape(o, -1), full_matrices=False)[0]
        u_in, u_out = u_in[:, :r_in], u_out[:, :r_out]
        core = torch.einsum("oiyx,oa,ib->abyx", w, u_out, u_in)
        weights = [u_in.T.reshape(r_in, i, 1, 1), core, u_out.reshape(o, r_out, 1, 1)]
    for c, wt in zip(convs, weights):
        c.weight.copy_(wt.to(c.weight.dtype))
    if conv.bias is not None:
        convs[-1].bias.copy_(conv.bias.detach())
    return FactorizedConv(scheme, ranks, convs)


def empty_factorized(conv: nn.Conv2d, scheme: str, ranks: tuple[int, ...]) -> FactorizedConv:
    """The factors' structure alone (weights uninitialised): what loading an artifact
    builds before `load_state_dict` fills it."""
    return FactorizedConv(scheme, ranks, factor_convs(conv, scheme, tuple(ranks)))


def stored_ranks(module: FactorizedConv) -> tuple[int, ...]:
    """The ranks the factor weights actually have (what `check` compares with the
    artifact's declaration)."""
    convs = list(module.children())
    if module.scheme == "tucker":
        return (convs[0].out_channels, convs[1].out_channels)
    return (convs[0].out_channels,)
