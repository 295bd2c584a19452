"""`ptq`: post-training static quantization, the baseline every QAT row is compared with.

The same folding, placement, brevitas quantizers and calibration as `qat`
(methods/quant/method.py), with no fine-tuning: activation scales come from brevitas's
calibration (99.999th percentile of each activation over the budget's calibration images,
the first images of the training split at the evaluation transform, so it is
deterministic), weight scales from the weights' per-channel maximum magnitude (MSE below
8 bits). Shipped and timed as an integer ONNX model in onnxruntime, like `qat`.

`algorithm` picks brevitas's PTQ algorithm (methods/quant/algorithms.py; all of them on the
same calibration images): `percentile` is the above, `minmax` takes max-abs scales for
weights and activations, `adaround` learns each weight's rounding, `gptq` / `gpfq` quantize
weights column by column and correct the error on the rest. `equalize=true` runs
cross-layer equalization on the folded float model first, `bias_correction=true` corrects
each layer's output mean last. docs/quantization.md says what each does and costs.
"""

from dataclasses import dataclass
from typing import ClassVar

from bench.config import setting
from bench.facts import Fact
from bench.method import register_method
from methods.quant.algorithms import ALGORITHMS
from methods.quant.method import QuantMethod, QuantMethodConfig


@dataclass
class PTQAlgorithm(Fact):
    """What the PTQ algorithms did: regions equalized, seconds each step took."""

    key: ClassVar[str] = "ptq"
    algorithm: str
    equalized_regions: int | None
    bias_corrected: bool
    algorithm_seconds: float


@register_method("ptq", family="quant")
class PTQ(QuantMethod):
    # 2: PReLU, LayerNorm, GELU and Softmax outputs read by an integer op get a quantizer
    # and attention matmuls take quantized operands (methods/quant/plan.py): another model
    # for ENet and SegFormer, so another run id. Version-1 artifacts still load and verify.
    version = 2
    # W8A8; W4A8 with each algorithm (against `qat` W4A8, on the same calibration
    # images), the best-equipped one, and mixed precision at uniform 4-bit's bytes
    sweep = [{"weight_bits": 8, "act_bits": 8}] + [
        {"weight_bits": 4, "act_bits": 8, "algorithm": a} for a in ALGORITHMS] + [
        {"weight_bits": 4, "act_bits": 8, "algorithm": "gptq", "equalize": True,
         "bias_correction": True},
        {"weight_bits": "auto", "mean_weight_bits": 4.0, "act_bits": 8},
    ]

    @dataclass
    class Config(QuantMethodConfig):
        # minmax | percentile (today's calibration) | adaround | gptq | gpfq
        algorithm: str = setting("percentile", choices=ALGORITHMS, new=True)
        # cross-layer equalization of the folded float model before quantizing
        equalize: bool = setting(False, new=True)
        # brevitas bias correction after calibration (and the algorithm)
        bias_correction: bool = setting(False, new=True)
        # AdaRound: optimisation steps per layer
        adaround_iters: int = setting(200, ge=1, new=True)

    # Own compute (`cost.run_s`) of a W8A8 run per algorithm, as a multiple of minmax's
    # (`Method.cost_factor`, what the planner prices). Measured on enet at the smoke budget,
    # --threads 1: 3 rounds interleaved in one process, each round every configuration
    # once (order alternating), each `bench.cli.main(["run", "--method", "ptq", "--model",
    # "enet", "--budget", "smoke", "--threads", "1", "--results", "/tmp/polish-ptq-time/r<k>",
    # "--set", "algorithm=<a>"])`; ratio to the same round's minmax run, median of the 3.
    # The shared 2-core host ran other work (load 5): per-round ratios spread ±30 %.
    #   percentile 1.36 0.94 1.02 -> 1.0 (no measurable excess)
    #   adaround   23.65 19.59 26.42 -> 24 (minmax 12-22 s, adaround 290-471 s)
    #   gptq       7.71 6.00 7.65 -> 7.7
    #   gpfq       12.89 7.22 9.38 -> 9.4
    # equalize=true and bias_correction=true (on percentile) measured no excess over
    # percentile in the same rounds (0.58 0.51 0.81 and 0.92 0.58 0.96): they add nothing.
    # GPxQ's share grows with calibration images and layer widths, AdaRound's with
    # `adaround_iters` (linearly: each layer trains that many steps; measured at 200).
    ALGORITHM_COST: ClassVar[dict[str, float]] = {
        "minmax": 1.0, "percentile": 1.0, "adaround": 24.0, "gptq": 7.7, "gpfq": 9.4}
    ADAROUND_MEASURED_ITERS: ClassVar[int] = 200

    def cost_factor(self) -> float:
        c = self.config
        excess = self.ALGORITHM_COST[c.algorithm] - 1
        if c.algorithm == "adaround":
            excess *= c.adaround_iters / self.ADAROUND_MEASURED_ITERS
        return 1 + excess

    @property
    def scale_stats(self) -> str:
        return "minmax" if self.config.algorithm == "minmax" else "percentile"

    def describe(self) -> str:
        c = self.config
        extra = [c.algorithm] if c.algorithm != "percentile" else []
        extra += ["equalized"] * c.equalize + ["bias-corrected"] * c.bias_correction
        return " ".join([super().describe(), *extra])

    def preprocess(self, ctx, model, trace) -> None:
        self._regions = None
        if self.config.equalize:
            from methods.quant.algorithms import brevitas_quietly, equalize

            with brevitas_quietly():
                self._regions = equalize(model, trace, self._require_plan())

    def postprocess(self, ctx, model, images) -> None:
        import time

        from methods.quant import algorithms

        c, bs, dev = self.config, ctx.budget.batch_size, ctx.device
        t0 = time.perf_counter()
        with algorithms.brevitas_quietly():
            if c.algorithm in ("gptq", "gpfq"):
                algorithms.gpxq(model, c.algorithm, images, bs, dev)
            elif c.algorithm == "adaround":
                algorithms.adaround(model, images, bs, dev, c.adaround_iters,
                                    seed=ctx.spec.seed)
            if c.bias_correction:
                algorithms.bias_correction(model, images, bs, dev)
        if c.algorithm in algorithms.ROUNDING or c.equalize or c.bias_correction:
            ctx.report(PTQAlgorithm(c.algorithm, self._regions, c.bias_correction,
                                    round(time.perf_counter() - t0, 2)))
