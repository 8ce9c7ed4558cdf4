"""PyTorch models in: torch.export, the ONNX exporter, then hamr, matching eager PyTorch on cpu and opencl.

Each model is compiled once for both native targets; the models with dynamic axes run at two batch sizes
(and two sequence lengths) from that one executable, every node native (no reference fallback).
"""

from __future__ import annotations

import functools

import numpy as np
import pytest

from tests.helpers import DEVICES, native_targets, require

require("torch", "torch")
require("onnxscript", "torch")

import hamr  # noqa: E402
from tests.frontends.torch_models import CASES, SCALED_SOFTSIGN, TorchCase  # noqa: E402

RTOL, ATOL = 1e-3, 1e-4


@pytest.fixture(scope="module", autouse=True)
def custom_op_registered_for_this_module():
    yield
    hamr.ops.unregister(SCALED_SOFTSIGN.domain, SCALED_SOFTSIGN.name)


@functools.cache
def compiled(name: str) -> tuple[TorchCase, hamr.Executable]:
    case = CASES[name]()
    exe = hamr.compile(
        case.module, targets=native_targets(), example_args=case.example, dynamic_shapes=case.dynamic_shapes
    )
    return case, hamr.load(exe.to_bytes())


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", list(CASES))
def test_the_model_matches_eager_pytorch(name, device):
    case, exe = compiled(name)
    target = device.split(":")[0]
    assert exe.variants[target]["fallback"] == {}
    session = hamr.Session(exe, device=device)
    names = [value.name for value in exe.signature.inputs]
    for inputs in case.checks:
        got = list(session.run({n: t.numpy() for n, t in zip(names, inputs)}).values())
        want = case.eager(inputs)
        assert len(got) == len(want)
        for g, w in zip(got, want):
            np.testing.assert_allclose(g, w, rtol=RTOL, atol=ATOL, err_msg=f"{name} on {device}, inputs {inputs}")


def test_dynamic_axes_stay_dynamic_and_keep_their_names():
    _, encoder = compiled("encoder")
    assert [value.shape for value in encoder.signature.inputs] == [["batch", "seq", 32], ["batch", "seq"]]
    _, gru = compiled("gru")
    assert gru.signature.inputs[0].shape == ["batch", "seq", 8]


def test_the_nn_gru_is_one_onnx_gru_and_the_scanned_cell_one_scan():
    ops = {
        name: {node.op_type for node in compiled(name)[1].model.graph.all_nodes()} for name in ("gru", "gru_cell_scan")
    }
    assert "GRU" in ops["gru"] and "Scan" in ops["gru_cell_scan"]


def test_the_torch_library_op_is_the_hamr_custom_op_running_natively():
    _, exe = compiled("custom_op")
    nodes = [node for node in exe.model.graph.all_nodes() if node.domain == "hamr_test"]
    assert [node.op_type for node in nodes] == ["ScaledSoftsign"]
    assert nodes[0].attributes["alpha"].value == pytest.approx(0.5)


def test_a_module_in_training_mode_is_exported_for_inference_and_left_training():
    import torch

    torch.manual_seed(0)
    module = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Dropout(0.5), torch.nn.Linear(8, 2)).train()
    x = torch.randn(3, 4)
    exe = hamr.compile(module, targets=["cpu"], example_args=(x,))
    assert module.training and all(m.training for m in module.modules())
    (got,) = hamr.Session(exe, device="cpu").run({exe.signature.inputs[0].name: x.numpy()}).values()
    with torch.no_grad():
        want = module.eval()(x).numpy()
    np.testing.assert_allclose(got, want, rtol=RTOL, atol=ATOL)
