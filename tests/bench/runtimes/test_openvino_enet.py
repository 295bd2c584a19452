"""ENet in OpenVINO: what made its float and int8 forms slow (a max-pooling with indices
run by a reference kernel) and its NNCF IR larger than the float weights (shape subgraphs
of the dynamic batch, a decomposed PReLU) must not come back (docs/runtimes.md, "ENet int8
in OpenVINO: where the time goes")."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from models import create_model

pytest.importorskip("openvino")

SHAPE = (1, 3, 32, 32)


@pytest.fixture(scope="module")
def enet():
    torch.manual_seed(0)
    return create_model("enet", 5).eval()


def test_openvino_runs_no_enet_layer_in_a_reference_kernel(enet):
    import openvino as ov

    from bench.runtimes.openvino_cpu import RUNTIME, _info, openvino_model

    compiled = ov.Core().compile_model(openvino_model(enet, SHAPE), "CPU", RUNTIME.config())
    slow = [op.get_friendly_name() for op in compiled.get_runtime_model().get_ops()
            if _info(op, "layerType") == "Reference"]
    assert not slow
    x = torch.randn(*SHAPE)
    out = compiled.create_infer_request().infer({0: x.numpy()})[compiled.outputs[0]]
    with torch.no_grad():
        np.testing.assert_allclose(out, enet(x).numpy(), atol=1e-4, rtol=1e-4)


def test_nncf_ir_of_enet_is_smaller_than_its_float_weights(enet):
    """int8 weights are a quarter of the float ones; the .xml is text (~0.5 KB a node), so
    the bound is the float weights' bytes, which the IR exceeded (2.1 MB against 1.5 MB)
    while a third of its nodes computed the batch size."""
    from methods.nncf_ptq import NncfPTQ

    method = NncfPTQ()
    images = torch.randn(2, *SHAPE[1:])
    files, precision = method.toolkit_compress(SimpleNamespace(input_shape=SHAPE), enet, images)
    assert precision == "int8" and not method.file_problems(files)
    float_bytes = sum(t.numel() * t.element_size() for t in enet.state_dict().values())
    assert len(files["xml"]) + len(files["bin"]) < float_bytes
    # the batch size of the zero padding and the unpooling: 5; read_model's IR had 272
    assert files["xml"].count(b'type="ShapeOf"') < 10
