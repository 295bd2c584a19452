"""SegFormer-B0 (Xie et al. 2021, arXiv:2105.15203): the zoo's first transformer.

Mix Transformer encoder MiT-B0 (widths 32/64/160/256, one block pair per stage, heads
1/2/5/8, spatial-reduction ratios 8/4/2/1, MLP ratio 4) and the all-MLP decoder (each stage
projected to 256 channels, upsampled to stride 4, concatenated, fused by a 1x1 conv-BN-ReLU,
1x1 classifier), as the paper's Section 3 and the official NVlabs/SegFormer code define
them:

* overlapping patch embeddings: 7x7 stride-4 conv for stage 1, 3x3 stride-2 convs after,
  each followed by LayerNorm; a LayerNorm closes every stage;
* efficient self-attention: keys and values come from the tokens reduced by a
  `sr x sr` stride-`sr` conv + LayerNorm (sr = 8, 4, 2, 1);
* Mix-FFN: Linear (x4) - depthwise 3x3 conv - GELU - Linear, no positional encoding.

Every learned projection is an `nn.Linear` or `nn.Conv2d`, so the MAdd counter, pruning and
quantisation tools see them (attention declares its head layout in `head_layers`, and its
forward takes widths from the projections, so head dimensions can be pruned); the two
attention matmuls (QK^T, AV) are parameter-free activations x activations products and,
like BatchNorm and GELU, cost nothing under the zoo's conv/linear MAdd convention
(models/describe.py); they and the softmax are modules (`MatMul`, `nn.Softmax`) so that
quantization can put a quantizer on each operand (methods/quant/plan.py). Stochastic
depth (0.1 in the paper's training recipe) is left out: it is a training regulariser with
no parameters.
Inputs of at least 32x32 pixels work at any size (the stage-1 reduction conv is 8x8 at
stride 4); logits are upsampled bilinearly to the input size.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from models._common import MatMul, no_pretrained_backbone
from models.registry import register_model

B0 = dict(widths=(32, 64, 160, 256), depths=(2, 2, 2, 2), heads=(1, 2, 5, 8),
          sr_ratios=(8, 4, 2, 1), mlp_ratio=4, decoder_width=256)


class PatchEmbed(nn.Module):
    """Overlapping patch embedding: a strided conv, then LayerNorm over channels."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int):
        super().__init__()
        self.proj = nn.Conv2d(cin, cout, kernel, stride, padding=kernel // 2)
        self.norm = nn.LayerNorm(cout)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, int, int]:
        x = self.proj(x)
        h, w = x.shape[-2:]
        return self.norm(x.flatten(2).transpose(1, 2)), h, w


class EfficientAttention(nn.Module):
    """Multi-head self-attention whose keys/values are spatially reduced by `sr`."""

    def __init__(self, dim: int, heads: int, sr: int):
        super().__init__()
        self.heads, self.scale = heads, (dim // heads) ** -0.5
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(dim, 2 * dim)
        self.proj = nn.Linear(dim, dim)
        self.sr = nn.Conv2d(dim, dim, sr, sr) if sr > 1 else None
        self.norm = nn.LayerNorm(dim) if sr > 1 else None
        # modules, not torch.matmul / torch.softmax: quantization puts a quantizer on each
        # matmul operand and on the softmax's output (methods/quant/plan.py); no
        # parameters, the same values
        self.qk, self.av = MatMul(transpose_b=True), MatMul()
        self.softmax = nn.Softmax(dim=-1)

    def head_layers(self) -> dict[nn.Module, int]:
        """The projections whose outputs split into heads, with their number of head-sized
        chunks (kv holds k's heads then v's): structured pruning must remove the same
        dimensions from every head (methods/pruning/channels.py)."""
        return {self.q: self.heads, self.kv: 2 * self.heads}

    def forward(self, x: torch.Tensor, h: int, w: int) -> torch.Tensor:
        # widths come from the projections, not from x: structured pruning may narrow the
        # per-head dimension (q, k, v) independently of the embedding width
        n, t, c = x.shape
        q = self.q(x)
        q = q.reshape(n, t, self.heads, -1).transpose(1, 2)
        ctx = x
        if self.sr is not None:
            ctx = self.sr(x.transpose(1, 2).reshape(n, c, h, w)).flatten(2).transpose(1, 2)
            ctx = self.norm(ctx)
        k, v = self.kv(ctx).reshape(n, -1, 2, self.heads, q.shape[-1]).permute(2, 0, 3, 1, 4)
        attn = self.softmax(self.qk(q, k) * self.scale)
        return self.proj(self.av(attn, v).transpose(1, 2).reshape(n, t, -1))


class MixFFN(nn.Module):
    """Linear expand, depthwise 3x3 conv (positional information), GELU, Linear."""

    def __init__(self, dim: int, ratio: int):
        super().__init__()
        hidden = dim * ratio
        self.fc1 = nn.Linear(dim, hidden)
        self.dwconv = nn.Conv2d(hidden, hidden, 3, padding=1, groups=hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor, h: int, w: int) -> torch.Tensor:
        x = self.fc1(x)
        n, t, c = x.shape
        x = self.dwconv(x.transpose(1, 2).reshape(n, c, h, w)).flatten(2).transpose(1, 2)
        return self.fc2(self.act(x))


class Block(nn.Module):
    def __init__(self, dim: int, heads: int, sr: int, mlp_ratio: int):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = EfficientAttention(dim, heads, sr)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = MixFFN(dim, mlp_ratio)

    def forward(self, x: torch.Tensor, h: int, w: int) -> torch.Tensor:
        x = x + self.attn(self.norm1(x), h, w)
        return x + self.mlp(self.norm2(x), h, w)


class MixTransformer(nn.Module):
    """MiT encoder: four stages, returning their (N, C, H, W) maps at strides 4/8/16/32."""

    def __init__(self, widths, depths, heads, sr_ratios, mlp_ratio):
        super().__init__()
        cins = (3, *widths[:-1])
        self.embeds = nn.ModuleList(
            PatchEmbed(cin, c, 7 if i == 0 else 3, 4 if i == 0 else 2)
            for i, (cin, c) in enumerate(zip(cins, widths))
        )
        self.stages = nn.ModuleList(
            nn.ModuleList(Block(c, nh, sr, mlp_ratio) for _ in range(d))
            for c, d, nh, sr in zip(widths, depths, heads, sr_ratios)
        )
        self.norms = nn.ModuleList(nn.LayerNorm(c) for c in widths)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        feats = []
        for embed, blocks, norm in zip(self.embeds, self.stages, self.norms):
            x, h, w = embed(x)
            for block in blocks:
                x = block(x, h, w)
            x = norm(x)
            x = x.transpose(1, 2).reshape(x.shape[0], -1, h, w)
            feats.append(x)
        return feats


class AllMLPDecoder(nn.Module):
    def __init__(self, widths, width: int, num_classes: int):
        super().__init__()
        self.linears = nn.ModuleList(nn.Linear(c, width) for c in widths)
        self.fuse = nn.Sequential(
            nn.Conv2d(len(widths) * width, width, 1, bias=False),
            nn.BatchNorm2d(width),
            nn.ReLU(inplace=True),
        )
        self.dropout = nn.Dropout(0.1)
        self.classifier = nn.Conv2d(width, num_classes, 1)

    def forward(self, feats: list[torch.Tensor]) -> torch.Tensor:
        size = feats[0].shape[-2:]
        ups = []
        for f, linear in zip(feats, self.linears):
            n, _, h, w = f.shape
            y = linear(f.flatten(2).transpose(1, 2)).transpose(1, 2).reshape(n, -1, h, w)
            ups.append(F.interpolate(y, size=size, mode="bilinear", align_corners=False))
        return self.classifier(self.dropout(self.fuse(torch.cat(ups[::-1], dim=1))))


class SegFormer(nn.Module):
    def __init__(self, num_classes: int, widths, depths, heads, sr_ratios, mlp_ratio,
                 decoder_width):
        super().__init__()
        self.encoder = MixTransformer(widths, depths, heads, sr_ratios, mlp_ratio)
        self.decoder = AllMLPDecoder(widths, decoder_width, num_classes)
        self.apply(_init)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.decoder(self.encoder(x))
        return F.interpolate(y, size=x.shape[-2:], mode="bilinear", align_corners=False)


def _init(m: nn.Module) -> None:
    """The official init: truncated-normal(0.02) linears, fan-out normal convs."""
    if isinstance(m, nn.Linear):
        nn.init.trunc_normal_(m.weight, std=0.02)
        nn.init.zeros_(m.bias)
    elif isinstance(m, nn.Conv2d):
        fan_out = m.kernel_size[0] * m.kernel_size[1] * m.out_channels // m.groups
        nn.init.normal_(m.weight, 0, (2.0 / fan_out) ** 0.5)
        if m.bias is not None:
            nn.init.zeros_(m.bias)


@register_model(
    "segformer_b0",
    paper="SegFormer: Simple and Efficient Design for Semantic Segmentation with Transformers",
    year=2021,
    input_size=(512, 512),
    output_stride=32,
    published_params=3_800_000,
    published_classes=150,
    published_madds=8.4,
    source="Xie et al. 2021 (arXiv:2105.15203), Table 2 (ADE20K, 150 classes): "
    "SegFormer-B0 3.8 M params (encoder + decoder), 8.4 GFLOPs at 512x512; those GFLOPs "
    "are multiply-adds counted by mmcv plus the attention matmuls (QK^T, AV; NVlabs/"
    "SegFormer tools/get_flops.py), which our conv/linear MAdds leave out",
)
def segformer_b0(num_classes: int, pretrained_backbone: bool = False) -> nn.Module:
    """Trained from scratch: there is no local ImageNet MiT-B0 checkpoint to start from."""
    no_pretrained_backbone("segformer_b0", pretrained_backbone)
    return SegFormer(num_classes, **B0)
