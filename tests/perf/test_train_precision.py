"""`make perf`: training-step throughput of `train.precision` and `train.channels_last`
against fp32 contiguous, U-Net-small at the `quick` budget's crop (96 x 96) and batch (16),
all four settings in one process, one step of each per round in alternating order, the
speedup the median of the per-round ratios (bench/latency.py). A benchmark: the ratios are
printed, not asserted. Whether a setting may become the default is a question of accuracy
parity (baseline mIoU within the seed spread), which this does not measure.

    SEGBENCH_PRECISION_MODEL=enet make perf     # another zoo model
    SEGBENCH_PRECISION_THREADS=1 make perf      # threads (default: every core, as a run)
"""

from __future__ import annotations

import copy
import os
import time

import pytest
import torch
import torch.nn.functional as F

from bench.latency import ratio_summary
from bench.precision import TrainingPrecision, cpu_bf16_native, cpu_bf16_supported

pytestmark = pytest.mark.perf
MODEL = os.environ.get("SEGBENCH_PRECISION_MODEL", "unet_small")
THREADS = int(os.environ.get("SEGBENCH_PRECISION_THREADS", os.cpu_count() or 1))
ROUNDS, WARMUP, BATCH, CROP, CLASSES = 12, 2, 16, 96, 9
SETTINGS = {"fp32": ("fp32", False), "channels_last": ("fp32", True),
            "bf16": ("bf16", False), "bf16+channels_last": ("bf16", True)}


def _stepper(model, precision, channels_last):
    cpu = torch.device("cpu")
    prec = TrainingPrecision(precision, channels_last, False, cpu)
    model = prec.prepare(model).train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    g = torch.Generator().manual_seed(0)
    x = prec.images(torch.randn(BATCH, 3, CROP, CROP, generator=g))
    y = torch.randint(0, CLASSES, (BATCH, CROP, CROP), generator=g)

    def step():
        with prec.autocast():
            loss = F.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step


@pytest.fixture
def threads():
    before = torch.get_num_threads()
    torch.set_num_threads(THREADS)
    yield THREADS
    torch.set_num_threads(before)


@pytest.mark.skipif(not cpu_bf16_supported(), reason="this CPU has no bf16 kernels")
def test_training_step_speedup_of_precision_and_layout(threads):
    from models import create_model

    torch.manual_seed(0)
    base = create_model(MODEL, num_classes=CLASSES)
    steps = {k: _stepper(copy.deepcopy(base), *v) for k, v in SETTINGS.items()}
    names = list(steps)
    for s in steps.values():
        for _ in range(WARMUP):
            s()
    times: dict[str, list[float]] = {k: [] for k in names}
    for i in range(ROUNDS):
        for k in (names if i % 2 == 0 else names[::-1]):
            t0 = time.perf_counter()
            steps[k]()
            times[k].append(time.perf_counter() - t0)
    print(f"\n{MODEL} train step, batch {BATCH}, {CROP}x{CROP}, {torch.get_num_threads()} "
          f"threads, {ROUNDS} interleaved rounds, CPU {torch.backends.cpu.get_cpu_capability()}"
          f"{' with native bf16' if cpu_bf16_native() else ' (bf16 emulated: no AVX512-BF16/AMX)'}")
    for k in names:
        r = ratio_summary(times["fp32"], times[k])
        print(f"  {k:20s} median step {1000 * sorted(times[k])[ROUNDS // 2]:7.1f} ms   "
              f"speedup over fp32 {r['median']:.2f} (IQR {r['p25']:.2f}-{r['p75']:.2f})")
    assert all(len(t) == ROUNDS for t in times.values())
