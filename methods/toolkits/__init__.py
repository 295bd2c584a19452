"""What the peer-toolkit plugins share (registers no method): a compressed model that is a
runtime's own file (an OpenVINO IR from NNCF, an ExecuTorch program from PT2E), stored as
the artifact's bytes and evaluated and timed in that runtime.

    runtime_file   `RuntimeFileMethod`: the base of `nncf_ptq`, `pt2e_ptq` and `pt2e_qat`
    pt2e           PT2E (torchao) with the XNNPACK quantizer, as `pt2e_ptq` and `pt2e_qat`
                   share it: capture, prepare, calibrate, convert and lower to a .pte
"""
