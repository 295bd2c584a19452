"""The one training loop every baseline and every method's fine-tuning goes through, so
that differences on the leaderboard come from the methods, not from their loops.

SGD (or Adam) with the "poly" schedule, cross-entropy with an ignore index (optionally
class-weighted) or the IoU loss, AMP on CUDA or bf16 autocast and channels-last as recorded
settings (bench/precision.py), seeded and deterministic on the CPU, a per-epoch CSV log, a
progress bar with ETA on stderr (one line per epoch when stderr is not a terminal). Method
stages plug in through `loss` and `on_step`.
"""

from __future__ import annotations

import csv
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from bench.precision import TrainingPrecision
from bench.spec import TrainConfig


def iou_loss(logits: torch.Tensor, target: torch.Tensor, ignore_index: int) -> torch.Tensor:
    """L = 1 - I/U on softmax probabilities, averaged over classes (Rahman & Wang 2016)."""
    n = logits.shape[1]
    valid = (target != ignore_index).unsqueeze(1)
    prob = logits.float().softmax(1) * valid
    onehot = F.one_hot(target.clamp(0, n - 1), n).permute(0, 3, 1, 2).float() * valid
    inter = (prob * onehot).sum((0, 2, 3))
    union = (prob + onehot - prob * onehot).sum((0, 2, 3))
    return 1.0 - (inter / union.clamp(min=1e-6)).mean()


def task_loss(logits: torch.Tensor, target: torch.Tensor, kind: str, ignore_index: int,
              weight: torch.Tensor | None = None):
    """`weight` (per class) weighs the cross-entropy term; the IoU term already averages
    over classes, so it is unweighted."""
    if kind == "iou":
        return iou_loss(logits, target, ignore_index)
    ce = F.cross_entropy(logits, target, weight=weight, ignore_index=ignore_index)
    return ce if kind == "ce" else ce + iou_loss(logits, target, ignore_index)


def enet_class_weights(counts) -> list[float]:
    """ENet's w_c = 1 / ln(1.02 + p_c) (Paszke et al. 2016, sec. 5.2), p_c the share of
    labelled training pixels in class c: bounded to [1, 50], so a rare class weighs up
    to ~50x without the blow-up of inverse frequency."""
    counts = torch.as_tensor(counts, dtype=torch.float64)
    p = counts / counts.sum().clamp(min=1)
    return [float(w) for w in 1.0 / torch.log(1.02 + p)]


def class_weights(cfg: TrainConfig, dataset: Dataset) -> list[float] | None:
    """The cross-entropy class weights `cfg` asks for, from the dataset's pixel counts at
    its training resolution (datasets cache those counts), or None."""
    if cfg.class_weights == "none":
        return None
    if not hasattr(dataset, "class_pixel_counts"):
        raise ValueError(f"train.class_weights={cfg.class_weights} needs a dataset that "
                         f"counts its label pixels; {type(dataset).__name__} does not")
    return enet_class_weights(dataset.class_pixel_counts())


def make_loader(dataset: Dataset, batch_size: int, shuffle: bool, seed: int,
                drop_last: bool = False) -> DataLoader:
    g = torch.Generator()
    g.manual_seed(seed)
    return DataLoader(dataset, batch_size=min(batch_size, len(dataset)), shuffle=shuffle,
                      generator=g, drop_last=drop_last, num_workers=0)


def poly_lr(base: float, step: int, total: int, power: float) -> float:
    return base * (1.0 - min(step, total - 1) / max(total, 1)) ** power


PROGRESS_EVERY_S = 30.0  # the least time between two progress lines when not on a tty


def progress_line(desc: str, epoch: int, epochs: int, loss: float, elapsed: float,
                  last_note: float) -> float:
    """With stderr not a terminal the progress bar is off, and a 33-minute baseline
    printed nothing; so print one line per epoch (at most one per PROGRESS_EVERY_S, and
    always the last), with an estimate of the time left. Returns when it last printed."""
    if elapsed - last_note < PROGRESS_EVERY_S and epoch < epochs:
        return last_note
    left = elapsed / epoch * (epochs - epoch)
    print(f"{desc}: epoch {epoch}/{epochs} loss {loss:.4f} elapsed {elapsed:.0f}s "
          f"left ~{left:.0f}s", file=sys.stderr, flush=True)
    return elapsed


def train(
    model: nn.Module,
    dataset: Dataset,
    *,
    epochs: int,
    lr: float,
    batch_size: int,
    cfg: TrainConfig,
    device: torch.device,
    ignore_index: int,
    seed: int,
    stages: Sequence = (),
    ctx=None,
    log_csv: Path | None = None,
    desc: str = "train",
) -> dict:
    """Train `model` in place; returns a summary (steps, seconds, last loss). `stages`
    add their `loss` and `on_step` hooks, which take the run's context `ctx` first."""
    if stages and ctx is None:
        raise ValueError("train: method stages need the run's context (ctx)")
    torch.manual_seed(seed)
    prec = TrainingPrecision(cfg.precision, cfg.channels_last, cfg.amp, device)
    prec.prepare(model.to(device)).train()
    params = [p for p in model.parameters() if p.requires_grad]
    if cfg.optimizer == "adam":
        base_lr = lr
        opt = torch.optim.Adam(params, lr=base_lr, weight_decay=cfg.weight_decay)
    else:
        base_lr = lr * cfg.sgd_lr_scale
        opt = torch.optim.SGD(params, lr=base_lr, momentum=cfg.momentum,
                              weight_decay=cfg.weight_decay)
    loader = make_loader(dataset, batch_size, shuffle=True, seed=seed, drop_last=True)
    total = max(epochs * len(loader), 1)
    cw = class_weights(cfg, dataset)
    weight = torch.tensor(cw, dtype=torch.float32, device=device) if cw else None
    scaler = prec.scaler
    writer = None
    if log_csv is not None:
        log_csv.parent.mkdir(parents=True, exist_ok=True)
        fh = open(log_csv, "w", newline="")
        writer = csv.writer(fh)
        writer.writerow(["epoch", "loss", "lr", "seconds"])
    step, t_start, last, last_note = 0, time.perf_counter(), float("nan"), float("-inf")
    bar = tqdm(total=total, desc=desc, unit="step", file=sys.stderr, leave=False,
               disable=None, dynamic_ncols=True)
    try:
        for epoch in range(epochs):
            if hasattr(dataset, "set_epoch"):
                dataset.set_epoch(epoch)
            t0, running, n = time.perf_counter(), 0.0, 0
            for images, targets in loader:
                cur = poly_lr(base_lr, step, total, cfg.poly_power)
                for gp in opt.param_groups:
                    gp["lr"] = cur
                images = prec.images(images.to(device, non_blocking=True))
                targets = targets.to(device, non_blocking=True)
                with prec.autocast():
                    logits = model(images)
                    loss = task_loss(logits, targets, cfg.loss, ignore_index, weight)
                    for st in stages:
                        loss = st.method.loss(ctx, model, images, targets, logits, loss)
                opt.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                scaler.step(opt)
                scaler.update()
                step += 1
                for st in stages:
                    st.method.on_step(ctx, model, step, total)
                last = float(loss.detach())
                if last != last:  # NaN
                    raise FloatingPointError(f"training loss became NaN at step {step}")
                running += last
                n += 1
                bar.update(1)
                bar.set_postfix(epoch=epoch + 1, loss=f"{last:.3f}", refresh=False)
            if writer:
                writer.writerow([epoch + 1, f"{running / max(n, 1):.5f}", f"{cur:.6g}",
                                 f"{time.perf_counter() - t0:.2f}"])
                fh.flush()
            if bar.disable:
                last_note = progress_line(desc, epoch + 1, epochs, running / max(n, 1),
                                          time.perf_counter() - t_start, last_note)
    finally:
        prec.restore(model)
        bar.close()
        if writer:
            fh.close()
    model.eval()
    return {"steps": step, "seconds": time.perf_counter() - t_start, "final_loss": last,
            **prec.describe()}
