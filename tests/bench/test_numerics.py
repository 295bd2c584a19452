"""FTZ/DAZ (bench/numerics.py): a denormal operand reads as zero on every intra-op thread of
a segbench process, because the flag is set before the first parallel region (threads
created earlier keep the old setting: the control below shows half the work unflushed)."""

import platform
import subprocess
import sys

import pytest

from bench.numerics import denormals_flushed, flush_denormals

pytestmark = pytest.mark.skipif(platform.machine() not in ("x86_64", "AMD64"),
                                reason="x86 FTZ/DAZ")

PROBE = """
import torch
{setup}
torch.set_num_threads(2)
x = torch.full((4_000_000,), 1e-39)  # below float32's smallest normal, 1.18e-38
{late}
print(int((x * 1.0).count_nonzero()))
"""


def _nonzero(setup: str = "", late: str = "") -> int:
    out = subprocess.run([sys.executable, "-c", PROBE.format(setup=setup, late=late)],
                         capture_output=True, text=True, timeout=120, check=True)
    return int(out.stdout.split()[-1])


def test_every_thread_of_a_segbench_process_flushes_denormals():
    assert _nonzero() == 4_000_000  # the host's default keeps them
    assert _nonzero(setup="from bench.cli import main; main(['list'])") == 0


def test_set_after_the_pool_exists_misses_its_workers():
    """Why segbench sets it first: the probe's control, flushed too late."""
    late = "x * 1.0; torch.set_flush_denormal(True)"
    assert 0 < _nonzero(late=late) < 4_000_000


def test_every_run_records_it(make_spec, run_spec):
    rec = run_spec(make_spec("none", "unet_small"))
    assert rec["env"]["flush_denormal"] is flush_denormals()


def test_building_an_onnxruntime_session_leaves_denormals_flushed():
    """onnxruntime's InferenceSession clears FTZ/DAZ in the thread that builds it; every
    later timing in that process then paid the denormal slow path (a fp16 row read 4.6x)."""
    import io

    import torch

    from methods.onnx.runtime import count_ops, make_session

    buf = io.BytesIO()
    torch.onnx.export(torch.nn.Conv2d(3, 4, 3).eval(), (torch.zeros(1, 3, 8, 8),), buf,
                      dynamo=False)
    flush_denormals()
    assert denormals_flushed()
    make_session(buf.getvalue(), threads=1)
    assert denormals_flushed()
    count_ops(buf.getvalue())  # a session built only to read the optimised graph, too
    assert denormals_flushed()


def test_paired_timing_flushes_whatever_ran_before():
    import torch

    from bench.latency import paired_latency

    seen = []
    torch.set_flush_denormal(False)  # as a library may leave it
    try:
        paired_latency({"a": lambda x: seen.append(denormals_flushed())}, (1, 3, 4, 4),
                       runs=3, warmup=1)
    finally:
        flush_denormals()
    assert seen and all(seen)


def test_a_timing_that_loses_the_flush_is_recorded_and_marked():
    """A predictor that clears FTZ/DAZ while it is timed (as building an onnxruntime
    session once did) leaves `latency_denormals_flushed` False and the timing marked `!`."""
    import torch

    from bench.latency import measure_paired

    def clears(x):
        torch.set_flush_denormal(False)
        return x

    cpu = torch.device("cpu")
    try:
        bad = measure_paired(clears, lambda x: x, (1, 1), cpu, runs=4, warmup=0)
    finally:
        flush_denormals()
    good = measure_paired(lambda x: x, lambda x: x, (1, 1), cpu, runs=4, warmup=0)
    assert bad["latency_denormals_flushed"] is False and bad["latency_noisy"]
    assert good["latency_denormals_flushed"] is True


def test_a_cpu_without_ftz_records_none_and_is_not_marked(monkeypatch):
    """Where the CPU has no FTZ/DAZ (torch.set_flush_denormal returns False) there is no
    flag to lose: the record says None and the timing is not marked for it."""
    import torch

    import bench.latency as latency

    monkeypatch.setattr(latency, "flush_denormals", lambda: False)
    lat = latency.measure_paired(lambda x: x, lambda x: x, (1, 1), torch.device("cpu"),
                                 runs=4, warmup=0)
    assert lat["latency_denormals_flushed"] is None
