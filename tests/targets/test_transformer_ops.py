"""Attention, RotaryEmbedding, SwiGLU and the losses run natively on cpu and opencl, matching onnx.reference."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper
from onnx.reference import ReferenceEvaluator

import hamr
from hamr.errors import HamrError
from tests.helpers import DEVICES

RNG = np.random.default_rng(7)
OPSET = 28
DTYPES = {np.float32: TensorProto.FLOAT, np.float64: TensorProto.DOUBLE, np.int64: TensorProto.INT64}
DTYPES[np.bool_] = TensorProto.BOOL


def one_node_model(op, feeds: dict, outputs: list[str], dims: dict | None = None, **attrs) -> onnx.ModelProto:
    """A model of one node; `dims` gives some inputs symbolic shapes (input name -> dim names)."""
    dims = dims or {}
    inputs = [
        helper.make_tensor_value_info(name, DTYPES[value.dtype.type], dims.get(name, value.shape))
        for name, value in feeds.items()
        if value is not None
    ]
    names = [name if value is not None else "" for name, value in feeds.items()]
    node = helper.make_node(op, names, outputs, **attrs)
    graph = helper.make_graph([node], "g", inputs, [onnx.ValueInfoProto(name=o) for o in outputs if o])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    inferred = {v.name: v for v in onnx.shape_inference.infer_shapes(model, strict_mode=True).graph.value_info}
    for output in model.graph.output:
        output.CopyFrom(inferred[output.name])
    return model


def check_native(model: onnx.ModelProto, device: str, feeds_list: list[dict], rtol=1e-5, atol=1e-6):
    target = "cpu" if device == "cpu" else "opencl"
    exe = hamr.compile(model, targets=[target])
    assert not exe.variants[target].get("fallback"), exe.variants[target].get("fallback")
    session = hamr.Session(hamr.load(exe.to_bytes()), device=device)
    reference = ReferenceEvaluator(model)
    for feeds in feeds_list:
        feeds = {k: v for k, v in feeds.items() if v is not None}
        got = session.run(feeds)
        names = [o.name for o in model.graph.output]
        for name, want in zip(names, reference.run(None, feeds)):
            np.testing.assert_allclose(got[name], want, rtol=rtol, atol=atol, err_msg=name)


def normal(*shape, dtype=np.float32):
    return RNG.standard_normal(shape).astype(dtype)


@pytest.mark.parametrize("device", DEVICES)
def test_attention_4d_gqa_causal_mask_softcap_and_softmax_output(device):
    feeds = dict(Q=normal(2, 6, 5, 8), K=normal(2, 3, 7, 8), V=normal(2, 3, 7, 4), attn_mask=normal(5, 7))
    model = one_node_model(
        "Attention", feeds, ["Y", "", "", "qk"], is_causal=1, softcap=3.0, qk_matmul_output_mode=3, scale=0.3
    )
    check_native(model, device, [feeds])


@pytest.mark.parametrize("device", DEVICES)
def test_attention_3d_with_past_bool_mask_and_biased_scores(device):
    feeds = dict(
        Q=normal(2, 3, 4 * 6),
        K=normal(2, 3, 2 * 6),
        V=normal(2, 3, 2 * 5),
        attn_mask=RNG.random((2, 1, 3, 8)) > 0.3,
        past_key=normal(2, 2, 5, 6),
        past_value=normal(2, 2, 5, 5),
    )
    feeds["attn_mask"][0, 0, 1] = False  # one fully masked row: its output and probabilities are 0
    outputs = ["Y", "present_key", "present_value", "qk"]
    model = one_node_model("Attention", feeds, outputs, q_num_heads=4, kv_num_heads=2, qk_matmul_output_mode=2)
    check_native(model, device, [feeds])


@pytest.mark.parametrize("device", DEVICES)
def test_attention_float64_nonpad_lengths_and_window_with_dynamic_batch(device):
    def feeds(batch):
        return dict(
            Q=normal(batch, 2, 3, 4, dtype=np.float64),
            K=normal(batch, 2, 6, 4, dtype=np.float64),
            V=normal(batch, 2, 6, 4, dtype=np.float64),
            attn_mask=None,
            past_key=None,
            past_value=None,
            nonpad_kv_seqlen=RNG.integers(3, 7, size=batch).astype(np.int64),
        )

    dims = {"Q": ["b", 2, 3, 4], "K": ["b", 2, 6, 4], "V": ["b", 2, 6, 4], "nonpad_kv_seqlen": ["b"]}
    model = one_node_model("Attention", feeds(1), ["Y"], dims=dims, is_causal=1, left_window_size=1)
    check_native(model, device, [feeds(1), feeds(3)], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("device", DEVICES)
def test_attention_causal_over_several_row_blocks_with_past_and_with_short_keys(device):
    """Causal cpu attention leaves out the keys past each 64-row block's frontier: blocks of 150 rows, with a
    past and a mask, and with nonpad lengths shorter than the queries (whole blocks masked: zeros)."""
    past = dict(
        Q=normal(1, 2, 150, 8),
        K=normal(1, 2, 150, 8),
        V=normal(1, 2, 150, 4),
        attn_mask=normal(150, 170),
        past_key=normal(1, 2, 20, 8),
        past_value=normal(1, 2, 20, 4),
    )
    model = one_node_model("Attention", past, ["Y", "", "", "qk"], is_causal=1, qk_matmul_output_mode=3)
    check_native(model, device, [past], rtol=1e-4, atol=1e-5)
    padded = dict(
        Q=normal(2, 2, 130, 8),
        K=normal(2, 2, 130, 8),
        V=normal(2, 2, 130, 4),
        attn_mask=None,
        past_key=None,
        past_value=None,
        nonpad_kv_seqlen=np.array([130, 40], np.int64),
    )
    check_native(one_node_model("Attention", padded, ["Y"], is_causal=1), device, [padded], rtol=1e-4, atol=1e-5)


def test_attention_with_mismatched_heads_is_one_error_line():
    feeds = dict(Q=normal(1, 3, 2, 4), K=normal(1, 2, 2, 4), V=normal(1, 2, 2, 4))
    dims = {name: ["b", "h" + name, 2, 4] for name in feeds}
    session = hamr.Session(hamr.compile(one_node_model("Attention", feeds, ["Y"], dims=dims), targets=["cpu"]))
    with pytest.raises(HamrError) as error:
        session.run(feeds)
    assert "3 query heads of size 4 do not match 2 key heads" in str(error.value)
    assert "\n" not in str(error.value)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("op", ["SoftmaxCrossEntropyLoss", "NegativeLogLikelihoodLoss"])
@pytest.mark.parametrize("reduction", ["none", "mean"])
def test_losses_with_weights_and_ignored_positions(device, op, reduction):
    target = RNG.integers(0, 5, size=(3, 2, 4)).astype(np.int64)
    target[0, 1, 2] = target[2, 0, 0] = 4
    feeds = dict(scores=normal(3, 5, 2, 4), target=target, weight=RNG.random(5).astype(np.float32))
    outputs = ["loss", "log_prob"] if op == "SoftmaxCrossEntropyLoss" else ["loss"]
    check_native(one_node_model(op, feeds, outputs, reduction=reduction, ignore_index=4), device, [feeds])


@pytest.mark.parametrize("device", DEVICES)
def test_nll_loss_sum_float64_without_weights(device):
    feeds = dict(scores=normal(6, 3, dtype=np.float64), target=RNG.integers(0, 3, size=6).astype(np.int64))
    check_native(one_node_model("NegativeLogLikelihoodLoss", feeds, ["loss"], reduction="sum"), device, [feeds])


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("interleaved", [0, 1])
def test_rotary_embedding_with_positions_and_partial_rotation(device, interleaved):
    feeds = dict(
        x=normal(2, 3, 5, 8),
        cos=normal(20, 2),
        sin=normal(20, 2),
        position_ids=RNG.integers(0, 20, size=(2, 5)).astype(np.int64),
    )
    model = one_node_model("RotaryEmbedding", feeds, ["y"], interleaved=interleaved, rotary_embedding_dim=4)
    check_native(model, device, [feeds])


@pytest.mark.parametrize("device", DEVICES)
def test_rotary_embedding_3d_with_caches_per_position(device):
    feeds = dict(x=normal(2, 5, 3 * 6), cos=normal(2, 5, 3), sin=normal(2, 5, 3))
    check_native(one_node_model("RotaryEmbedding", feeds, ["y"], num_heads=3), device, [feeds])


@pytest.mark.parametrize("device", DEVICES)
def test_swiglu_fuses_as_an_elementwise_op(device):
    feeds = dict(a=normal(4, 16), b=normal(4, 16))
    check_native(one_node_model("SwiGLU", feeds, ["y"], alpha=0.7), device, [feeds])


@pytest.mark.parametrize("device", DEVICES)
def test_linear_attention_gated_delta_gqa_with_past_state_over_two_lengths(device):
    def feeds(steps):
        return dict(
            query=normal(2, steps, 4 * 6),
            key=normal(2, steps, 2 * 6),
            value=normal(2, steps, 2 * 5),
            past_state=normal(2, 2, 6, 5),
            decay=-RNG.random((2, steps, 2 * 6)).astype(np.float32),
            beta=RNG.random((2, steps, 2)).astype(np.float32),
        )

    dims = {name: [2, "t", width] for name, width in dict(query=24, key=12, value=10, decay=12, beta=2).items()}
    model = one_node_model(
        "LinearAttention", feeds(3), ["output", "present_state"], dims=dims, q_num_heads=4, kv_num_heads=2
    )
    check_native(model, device, [feeds(3), feeds(1)], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("device", DEVICES)
def test_linear_attention_linear_rule_with_explicit_scale(device):
    feeds = dict(query=normal(1, 5, 8), key=normal(1, 5, 8), value=normal(1, 5, 8))
    model = one_node_model(
        "LinearAttention",
        feeds,
        ["output", "present_state"],
        q_num_heads=2,
        kv_num_heads=2,
        update_rule="linear",
        scale=0.5,
    )
    check_native(model, device, [feeds], rtol=1e-4, atol=1e-5)
