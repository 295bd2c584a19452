"""Segmentation metrics from a confusion matrix accumulated on the model's device.

mIoU averages IoU over the classes present (union > 0) in ground truth or prediction,
the usual convention; pixels labelled `ignore_index` count nowhere.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch


def update_confusion(conf: torch.Tensor, pred: torch.Tensor, target: torch.Tensor,
                     ignore_index: int) -> None:
    n = conf.shape[0]
    valid = target != ignore_index
    idx = target[valid].long() * n + pred[valid].long()
    conf += torch.bincount(idx, minlength=n * n).view(n, n)


def scores(conf: torch.Tensor) -> dict:
    conf = conf.double().cpu()
    tp = conf.diag()
    gt, pr = conf.sum(1), conf.sum(0)
    union = gt + pr - tp
    iou = torch.where(union > 0, tp / union.clamp(min=1), torch.full_like(tp, float("nan")))
    present = union > 0
    miou = float(iou[present].mean()) if present.any() else 0.0
    total = conf.sum()
    return {
        "miou": miou,
        "pixel_acc": float(tp.sum() / total) if total > 0 else 0.0,
        "per_class_iou": [None if torch.isnan(v) else float(v) for v in iou],
    }


@torch.no_grad()
def confusion(predict: Callable[[torch.Tensor], torch.Tensor], batches: Iterable,
              num_classes: int, ignore_index: int, device: torch.device,
              progress: Callable | None = None) -> torch.Tensor:
    """The (true class x predicted class) pixel counts of `predict` (images -> logits) over
    `batches` of (images, targets)."""
    conf = torch.zeros(num_classes, num_classes, dtype=torch.int64, device=device)
    it = progress(batches) if progress else batches
    for images, targets in it:
        logits = predict(images.to(device, non_blocking=True))
        targets = targets.to(logits.device, non_blocking=True)
        if logits.shape[-2:] != targets.shape[-2:]:
            raise ValueError(
                f"model output {tuple(logits.shape[-2:])} differs from label size "
                f"{tuple(targets.shape[-2:])}; models must return full-resolution logits"
            )
        update_confusion(conf, logits.argmax(1), targets, ignore_index)
    return conf


def evaluate(predict: Callable[[torch.Tensor], torch.Tensor], batches: Iterable,
             num_classes: int, ignore_index: int, device: torch.device,
             progress: Callable | None = None) -> dict:
    """Run `predict` (images -> logits) over `batches` of (images, targets)."""
    return scores(confusion(predict, batches, num_classes, ignore_index, device, progress))
