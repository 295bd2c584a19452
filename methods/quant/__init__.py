"""Building blocks of integer quantization with brevitas (registers no method).

    trace            one traced forward pass: which call feeds which (the dataflow)
    plan             where quantizers go, BatchNorm folding, the frozen structure on reload
    modules          activation quantizers and frozen integer layers (what is exported)
    brevitas_layers  brevitas layers in place of the planned ones, calibration, freezing
    algorithms       brevitas's PTQ algorithms: equalization, GPTQ/GPFQ, AdaRound, bias correction
    mixed            mixed precision: per-layer weight widths from sensitivity under a budget
    method           `QuantMethod`, the base of `qat` and `ptq`
"""
