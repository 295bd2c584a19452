"""Parameter and MAdd counts of zoo models, beside the published figures.

`describe_models` is what `python -m bench zoo` prints; `python -m models.describe
--markdown` regenerates the tables of docs/zoo.md, so the numbers there are measured, never
typed. MAdds use bench.complexity.count_madds (conv/linear multiply-adds, torchvision's
`_ops` convention).

    python -m models.describe                      # every model, 128x128, 21 classes
    python -m models.describe --size 513x513 deeplabv3plus_resnet50
    python -m models.describe --markdown > docs/zoo.md
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

import torch

from bench.complexity import count_madds
from models.registry import create_model, list_models, model_info

CPU_SIZE, CPU_CLASSES = (128, 128), 9  # the synthetic dataset `make bench` trains on


def measure(
    name: str, input_size: tuple[int, int], num_classes: int, **kwargs
) -> tuple[int, float]:
    """(parameters, GMAdds) of one forward pass of `name` at `input_size`."""
    torch.manual_seed(0)
    model = create_model(name, num_classes=num_classes, **kwargs).eval()
    c = count_madds(model, (1, 3, *input_size))
    return c.params, c.madds / 1e9


def reference_classes(name: str) -> int:
    """The class count of the paper's setting: published, else CamVid (12) or VOC (21)."""
    info = model_info(name)
    if info.published_classes:
        return info.published_classes
    return 12 if tuple(info.input_size) == (360, 480) else 21


def describe_models(
    names: list[str] | None, input_size: tuple[int, int], num_classes: int = 21
) -> list[dict[str, Any]]:
    """One row per model: its metadata and params / GMAdds measured at `input_size`."""
    rows = []
    for name in names or list_models():
        info = model_info(name)
        params, madds = measure(name, tuple(input_size), num_classes)
        rows.append(
            {
                "name": name,
                "paper": info.paper,
                "year": info.year,
                "params": params,
                "madds_g": madds,
                "published_params": info.published_params,
                "published_classes": info.published_classes,
                "published_madds_g": info.published_madds,
                "output_stride": info.output_stride,
                "input_size": tuple(input_size),
                "num_classes": num_classes,
                "reference_input_size": tuple(info.input_size),
                "cpu_default": info.cpu_default,
                "source": info.extra.get("source", ""),
            }
        )
    return rows


# ---------------------------------------------------------------- markdown for docs/zoo.md


def _m(n: int | None) -> str:
    return "-" if n is None else f"{n / 1e6:.2f} M"


def _size(s: tuple[int, int]) -> str:
    return f"{s[0]}x{s[1]}"


def zoo_table() -> str:
    head = (
        "| model | year | OS | params @128x128, 9 cl. | GMAdds @128x128 | reference input, "
        "classes | params @ref | GMAdds @ref | published params | published GMAdds "
        "(ours at that size) | source of the published figures |\n"
        "|---|---|---|---|---|---|---|---|---|---|---|\n"
    )
    lines = []
    for name in list_models():
        info = model_info(name)
        ref, ncls = tuple(info.input_size), reference_classes(name)
        p_cpu, m_cpu = measure(name, CPU_SIZE, CPU_CLASSES)
        p_ref, m_ref = measure(name, ref, ncls)
        pub_m = "-"
        if info.published_madds is not None:
            pub_m = f"{info.published_madds:g} @{_size(ref)} (ours {m_ref:.2f})"
        elif "published_madds_at" in info.extra:
            size, value = info.extra["published_madds_at"]
            _, ours = measure(name, tuple(size), ncls)
            pub_m = f"{value:g} @{_size(size)} (ours {ours:.2f})"
        pub_p = "-"
        if info.published_params is not None:
            delta = 100 * (p_ref - info.published_params) / info.published_params
            pub_p = f"{_m(info.published_params)} @{info.published_classes} cl. ({delta:+.1f} %)"
        star = " (CPU default)" if info.cpu_default else ""
        lines.append(
            f"| `{name}`{star} | {info.year} | {info.output_stride} | {_m(p_cpu)} | "
            f"{m_cpu:.3f} | {_size(ref)}, {ncls} | {_m(p_ref)} | {m_ref:.2f} | {pub_p} | "
            f"{pub_m} | {info.extra.get('source', '')} |"
        )
    return head + "\n".join(lines) + "\n"


def variants_table(size: tuple[int, int] = (513, 513), num_classes: int = 21) -> str:
    """DeepLabV3+ head variants at the reference setting, relative to the standard head."""
    head = (
        "| backbone | output stride | aspp | ksac | params | GMAdds | params vs standard | "
        "GMAdds vs standard |\n|---|---|---|---|---|---|---|---|\n"
    )
    lines = []
    for backbone in ("deeplabv3plus_resnet50", "deeplabv3plus_mobilenetv2"):
        base_p, base_m = measure(backbone, size, num_classes)
        configs = [(16, "standard", False), (8, "standard", False), (32, "standard", False)]
        configs += [
            (16, kind, False) for kind in ("ds", "btn", "caspp1", "caspp2", "caspp3", "caspp4")
        ]
        configs += [(16, "standard", True), (16, "ds", True), (16, "caspp2", True)]
        for os_, kind, ksac in configs:
            kw = dict(output_stride=os_, aspp=kind, ksac=ksac)
            p, m = measure(backbone, size, num_classes, **kw)
            lines.append(
                f"| {backbone.split('_', 1)[1]} | {os_} | {kind} | {'yes' if ksac else 'no'} | "
                f"{_m(p)} | {m:.2f} | {100 * (p / base_p - 1):+.1f} % | "
                f"{100 * (m / base_m - 1):+.1f} % |"
            )
    return head + "\n".join(lines) + "\n"


def _parse_size(s: str) -> tuple[int, int]:
    h, _, w = s.lower().partition("x")
    return int(h), int(w or h)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m models.describe", description=__doc__)
    ap.add_argument("names", nargs="*", help="models (default: all)")
    ap.add_argument("--size", type=_parse_size, default=CPU_SIZE, help="HxW (default 128x128)")
    ap.add_argument("--classes", type=int, default=21)
    ap.add_argument("--markdown", action="store_true", help="print docs/zoo.md")
    args = ap.parse_args(argv)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    if args.markdown:
        from models._zoo_doc import render

        sys.stdout.write(render(zoo_table(), variants_table()))
        return 0
    for r in describe_models(args.names or None, args.size, args.classes):
        size, pub = _size(r["input_size"]), _m(r["published_params"])
        print(
            f"{r['name']:28s} OS{r['output_stride']:<3d} {_m(r['params']):>10s} "
            f"{r['madds_g']:9.3f} GMAdds @{size}   published {pub}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
