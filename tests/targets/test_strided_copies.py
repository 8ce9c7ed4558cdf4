"""Transpose, Slice and Expand through the merged-axes strided copy (rows and tiles) and broadcast reads, vs NumPy."""

from __future__ import annotations

import itertools

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import hamr
from hamr.targets.native.ops.strided_copy import merged, tiled_axis
from tests.helpers import DEVICES

RNG = np.random.default_rng(21)
TRANSPOSES = [
    ((1, 128, 12, 32), (0, 2, 1, 3)),  # attention heads: rows of 32
    ((1, 12, 128, 32), (0, 1, 3, 2)),  # K^T: batched 2-D tiles
    ((70, 45), (1, 0)),  # tiles with ragged edges
    ((3, 1, 40, 1, 33), (4, 2, 0, 3, 1)),  # size-1 axes dropped
    ((2, 3, 4, 5, 6), (0, 1, 2, 3, 4)),  # identity: one contiguous run
    ((5, 7), (0, 1)),
    ((9,), (0,)),
    ((0, 4, 3), (2, 0, 1)),  # empty
    ((4, 6, 5), (1, 2, 0)),  # tiles too small: rows with strided reads
    ((16, 9, 20), (2, 1, 0)),
]
TRANSPOSES += [((2, 3, 16, 17), perm) for perm in itertools.permutations(range(4))]


def session(model: onnx.ModelProto, device: str) -> hamr.Session:
    target = "cpu" if device == "cpu" else "opencl"
    s = hamr.Session(hamr.load(hamr.compile(model, targets=[target]).to_bytes()), device=device)
    assert s.executable.variants[target]["fallback"] == {}
    return s


def graph_of(nodes, inputs: dict[str, np.ndarray], inits=()) -> onnx.ModelProto:
    """One model running `nodes` side by side; output i is nodes[i].output[0]."""

    def info(name, array):
        return helper.make_tensor_value_info(name, helper.np_dtype_to_tensor_dtype(array.dtype), array.shape)

    outputs = [helper.make_tensor_value_info(n.output[0], TensorProto.UNDEFINED, None) for n in nodes]
    graph = helper.make_graph(nodes, "g", [info(k, v) for k, v in inputs.items()], outputs, list(inits))
    return onnx.shape_inference.infer_shapes(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]))


def test_merged_axes_drop_ones_and_join_contiguous_neighbours():
    assert merged([1, 12, 128, 32], [0, 32, 384, 1]) == ([12, 128, 32], [32, 384, 1])
    assert merged([2, 3, 4], [12, 4, 1]) == ([24], [1])
    assert merged([1, 1], [5, 7]) == ([1], [0])
    assert merged([4, 5], [0, 0]) == ([20], [0])
    assert tiled_axis([12, 32, 128], [4096, 1, 32]) == 1
    assert tiled_axis([12, 128, 32], [32, 384, 1]) == -1  # the last axis is contiguous: rows


@pytest.mark.parametrize("device", DEVICES)
def test_transposes_match_numpy(device):
    feeds, nodes, want = {}, [], {}
    for i, (shape, perm) in enumerate(TRANSPOSES):
        for dtype in (np.float32, np.int64):
            name = f"x{i}{np.dtype(dtype).char}"
            feeds[name] = RNG.standard_normal(shape).astype(dtype) * 10
            nodes.append(helper.make_node("Transpose", [name], ["y" + name], perm=list(perm)))
            want["y" + name] = np.transpose(feeds[name], perm)
    got = session(graph_of(nodes, feeds), device).run(feeds)
    for name, expected in want.items():
        np.testing.assert_array_equal(got[name], expected, err_msg=name)


@pytest.mark.parametrize("device", DEVICES)
def test_slices_and_expands_match_numpy(device):
    x = RNG.standard_normal((6, 40, 35)).astype(np.float32)
    slices = [
        ([0, 2, 1], [6, 38, 35], [0, 1, 2], [1, 1, 1]),
        ([5, 39, 34], [-7, -41, -36], [0, 1, 2], [-1, -2, -3]),
        ([1], [4], [2], [1]),
        ([0, 0], [6, 40], [0, 1], [2, 3]),
    ]
    expands = [((40, 1), (3, 40, 50)), ((1, 35), (40, 35)), ((1,), (2, 3, 4)), ((6, 1, 35), (6, 40, 35))]
    feeds, nodes, inits, want = {"x": x}, [], [], {}
    for i, (starts, ends, axes, steps) in enumerate(slices):
        names = [f"{k}{i}" for k in "seat"]
        for n, v in zip(names, [starts, ends, axes, steps]):
            inits.append(numpy_helper.from_array(np.array(v, np.int64), n))
        nodes.append(helper.make_node("Slice", ["x", *names], [f"slice{i}"]))
        index = [slice(None)] * 3
        for s, e, a, t in zip(starts, ends, axes, steps):
            index[a] = slice(s, None if e < -x.shape[a] else e, t)
        want[f"slice{i}"] = x[tuple(index)]
    for i, (src, shape) in enumerate(expands):
        feeds[f"v{i}"] = RNG.standard_normal(src).astype(np.float32)
        inits.append(numpy_helper.from_array(np.array(shape, np.int64), f"shape{i}"))
        nodes.append(helper.make_node("Expand", [f"v{i}", f"shape{i}"], [f"expand{i}"]))
        want[f"expand{i}"] = np.broadcast_to(feeds[f"v{i}"], shape)
    got = session(graph_of(nodes, feeds, inits), device).run(feeds)
    for name, expected in want.items():
        np.testing.assert_array_equal(got[name], expected, err_msg=name)


BROADCASTS = [
    ((1, 12, 128, 128), (1, 1, 1, 128)),  # attention mask
    ((2, 3, 4, 5), (2, 1, 4, 1)),
    ((3, 1, 5), (1, 4, 1)),
    ((6, 7), (6, 1)),
    ((1, 1), (5, 1, 3)),
    ((4, 1, 6, 1), (1, 5, 1, 7)),
    ((2, 3, 0), (1, 3, 1)),
    ((7,), (3, 1, 7)),
    ((3, 211, 101), (211, 1)),  # above the parallel threshold: threads split rows
    ((67, 999), (999,)),  # a suffix read, rows split across threads
    ((5, 1, 3001), (5, 13, 1)),  # both inputs broadcast, along different axes
]


@pytest.mark.parametrize("symbolic", [False, True])
@pytest.mark.parametrize("device", DEVICES)
def test_broadcast_reads_match_numpy(device, symbolic):
    """Elementwise chains over broadcast inputs; with symbolic dims every read takes the strided mode."""
    feeds, nodes, want, infos = {}, [], {}, []
    for i, (sa, sb) in enumerate(BROADCASTS):
        a, b = f"a{i}", f"b{i}"
        feeds[a] = RNG.standard_normal(sa).astype(np.float32)
        feeds[b] = RNG.standard_normal(sb).astype(np.float32)
        for name, shape in [(a, sa), (b, sb)]:
            dims = [f"{name}_{k}" if symbolic else d for k, d in enumerate(shape)]
            infos.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, dims))
        nodes += [helper.make_node("Add", [a, b], [f"s{i}"]), helper.make_node("Mul", [f"s{i}", b], [f"y{i}"])]
        want[f"y{i}"] = (feeds[a] + feeds[b]) * feeds[b]
    outputs = [helper.make_tensor_value_info(n, TensorProto.UNDEFINED, None) for n in want]
    model = helper.make_model(
        helper.make_graph(nodes, "bcast", infos, outputs), opset_imports=[helper.make_opsetid("", 17)]
    )
    got = session(onnx.shape_inference.infer_shapes(model), device).run(feeds)
    for name, expected in want.items():
        np.testing.assert_allclose(got[name], expected, rtol=1e-6, atol=1e-6, err_msg=name)


CONCATS = [
    ([(1, 24, 80, 80)] * 4, 1),  # PP-OCR det's neck: four blocks of 6400-element rows, split across threads
    ([(3, 5, 7), (3, 2, 7), (3, 1, 7)], 1),
    ([(4, 3), (4, 5)], -1),  # rows of one to five elements
    ([(2, 3), (7, 3)], 0),
    ([(37, 1000), (37, 1200)], 1),  # above the parallel threshold, rows cut mid-way by the thread split
    ([(2, 0, 4), (2, 3, 4)], 1),  # an empty block
]


@pytest.mark.parametrize("device", DEVICES)
def test_concats_match_numpy(device):
    feeds, nodes, want = {}, [], {}
    for i, (shapes, axis) in enumerate(CONCATS):
        names = []
        for j, shape in enumerate(shapes):
            names.append(f"c{i}_{j}")
            feeds[names[-1]] = RNG.standard_normal(shape).astype(np.float32)
        nodes.append(helper.make_node("Concat", names, [f"y{i}"], axis=axis))
        want[f"y{i}"] = np.concatenate([feeds[n] for n in names], axis=axis)
    feeds["k0"], feeds["k1"] = (
        np.arange(60, dtype=np.int64).reshape(5, 12),
        np.arange(24, dtype=np.int64).reshape(2, 12),
    )
    nodes.append(helper.make_node("Concat", ["k0", "k1"], ["yk"], axis=0))
    want["yk"] = np.concatenate([feeds["k0"], feeds["k1"]])
    got = session(graph_of(nodes, feeds), device).run(feeds)
    for name, expected in want.items():
        np.testing.assert_array_equal(got[name], expected, err_msg=name)
