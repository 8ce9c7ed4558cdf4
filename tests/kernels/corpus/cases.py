"""The CUDA corpus: for each kernel, its file, inputs (small, seeded), launch shape, arguments and NumPy reference."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

HERE = Path(__file__).parent
f32, i32, u32 = np.float32, np.int32, np.uint32


@dataclass(frozen=True)
class Case:
    file: str
    kernel: str  # the converted kernel's name (templates: name_args)
    make: Callable[[np.random.Generator], dict]  # the arguments by name
    args: tuple[str, ...]  # launch order
    grid: tuple[int, ...]
    block: tuple[int, ...]
    reference: Callable[[dict], dict]  # expected outputs by name, from the inputs
    shared_bytes: int = 0
    rtol: float = 1e-4
    atol: float = 1e-5
    # what is compared of the arguments after the launch (default: the arrays the reference names, as they are)
    view: Callable[[dict], dict] | None = None

    def outputs(self, data: dict) -> dict:
        return self.view(data) if self.view else data

    @property
    def id(self) -> str:
        return f"{Path(self.file).stem}.{self.kernel}"

    @property
    def path(self) -> Path:
        return HERE / self.file


def rand(rng, *shape, lo=-1.0, hi=1.0):
    return rng.uniform(lo, hi, shape).astype(f32)


def _gemm(rng, m=37, n=29, k=23):
    return {
        "A": rand(rng, m, k),
        "B": rand(rng, k, n),
        "C": np.zeros((m, n), f32),
        "M": i32(m),
        "N": i32(n),
        "K": i32(k),
    }


def _softmax(x):
    e = np.exp(x - x.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _layernorm(d):
    x = d["input"].astype(np.float64)
    mu = x.mean(axis=1, keepdims=True)
    var = ((x - mu) ** 2).mean(axis=1, keepdims=True)
    return {"output": ((x - mu) / np.sqrt(var + d["eps"]) * d["gamma"] + d["beta"]).astype(f32)}


def _gelu_tanh(x):
    return (0.5 * x * (1 + np.tanh(0.7978845608028654 * (x + 0.044715 * x**3)))).astype(f32)


def _gelu_erf(x):
    from scipy.special import erf

    return (0.5 * x * (1 + erf(x * 0.70710678))).astype(f32)


def _jacobi(x):
    out = x.copy()
    out[1:-1, 1:-1] = 0.2 * (x[1:-1, 1:-1] + x[1:-1, :-2] + x[1:-1, 2:] + x[:-2, 1:-1] + x[2:, 1:-1])
    return out


def _attention(d):
    s = d["Q"] @ d["K"].T * d["scale"]
    seq = s.shape[0]
    s[np.triu_indices(seq, 1)] = -np.inf
    return {"S": s.astype(f32)}


def _conv1d(d, radius=3):
    x = np.pad(d["in"], radius)
    return {"out": np.array([x[i : i + 2 * radius + 1] @ d["filter"] for i in range(d["n"])], f32)}


def _conv2d(d, radius=2):
    x, f = np.pad(d["in"].astype(np.float64), radius), d["filter"].reshape(2 * radius + 1, 2 * radius + 1)
    h, w = d["in"].shape
    out = sum(f[dy, dx] * x[dy : dy + h, dx : dx + w] for dy in range(2 * radius + 1) for dx in range(2 * radius + 1))
    return {"out": out.astype(f32)}


def _batched_gemv(r, batch=3, rows=10, cols=136):
    return {
        "A": rand(r, batch, rows, cols),
        "x": rand(r, batch, cols),
        "y": np.zeros((batch, rows), f32),
        "rows": i32(rows),
        "cols": i32(cols),
    }


def _hist(d):
    return {"hist": np.bincount(d["data"] % 64, minlength=64).astype(u32)}


def _bitmask(flags, words: int):
    """Bit i % 32 of word i // 32 set where flags[i] is."""
    padded = np.zeros(words * 32, np.uint64)
    padded[: flags.size] = flags != 0
    return (padded.reshape(words, 32) << np.arange(32, dtype=np.uint64)).sum(axis=1).astype(u32)


CASES = [
    Case(
        "vector_add.cu",
        "vectorAdd",
        lambda r: {"A": rand(r, 1000), "B": rand(r, 1000), "C": np.zeros(1000, f32), "n": i32(1000)},
        ("A", "B", "C", "n"),
        (4,),
        (256,),
        lambda d: {"C": d["A"] + d["B"]},
    ),
    Case(
        "saxpy.cu",
        "saxpy_float",
        lambda r: {"n": i32(3000), "a": f32(2.5), "x": rand(r, 3000), "y": rand(r, 3000)},
        ("n", "a", "x", "y"),
        (4,),
        (256,),
        lambda d: {"y": d["a"] * d["x"] + d["y"]},
    ),
    Case(
        "gemm.cu",
        "matmul_naive",
        _gemm,
        ("A", "B", "C", "M", "N", "K"),
        (2, 3),
        (16, 16),
        lambda d: {"C": d["A"] @ d["B"]},
    ),
    Case(
        "gemm.cu",
        "matmul_tiled",
        _gemm,
        ("A", "B", "C", "M", "N", "K"),
        (2, 3),
        (16, 16),
        lambda d: {"C": d["A"] @ d["B"]},
    ),
    Case(
        "transpose.cu",
        "transposeCoalesced",
        lambda r: {"odata": np.zeros((40, 70), f32), "idata": rand(r, 70, 40), "width": i32(40), "height": i32(70)},
        ("odata", "idata", "width", "height"),
        (2, 3),
        (32, 8),
        lambda d: {"odata": d["idata"].T.copy()},
    ),
    Case(
        "reduce_tree.cu",
        "reduce3",
        lambda r: {"g_idata": rand(r, 1000), "g_odata": np.zeros(4, f32), "n": u32(1000)},
        ("g_idata", "g_odata", "n"),
        (4,),
        (128,),
        lambda d: {"g_odata": np.pad(d["g_idata"], (0, 24)).reshape(4, 256).sum(axis=1)},
        shared_bytes=128 * 4,
    ),
    Case(
        "reduce_warp.cu",
        "deviceReduceBlockAtomicKernel",
        lambda r: {"in": rand(r, 5000), "out": np.zeros(1, f32), "N": i32(5000)},
        ("in", "out", "N"),
        (4,),
        (128,),
        lambda d: {"out": np.array([d["in"].sum()], f32)},
        atol=1e-3,
    ),
    Case(
        "reduce_warp.cu",
        "deviceReduceWarpAtomicKernel",
        lambda r: {"in": rand(r, 5000), "out": np.zeros(1, f32), "N": i32(5000)},
        ("in", "out", "N"),
        (4,),
        (128,),
        lambda d: {"out": np.array([d["in"].sum()], f32)},
        atol=1e-3,
    ),
    Case(
        "reduce_atomic.cu",
        "max_atomic",
        lambda r: {
            "x": r.integers(-(10**6), 10**6, 777).astype(i32),
            "result": np.full(1, -(2**31), i32),
            "n": i32(777),
        },
        ("x", "result", "n"),
        (4,),
        (256,),
        lambda d: {"result": np.array([d["x"].max()], i32)},
    ),
    Case(
        "reduce_atomic.cu",
        "sum_atomic",
        lambda r: {"x": rand(r, 777), "result": np.zeros(1, f32), "n": i32(777)},
        ("x", "result", "n"),
        (4,),
        (256,),
        lambda d: {"result": np.array([d["x"].sum()], f32)},
        atol=1e-3,
    ),
    Case(
        "softmax.cu",
        "softmax_warp",
        lambda r: {
            "input": rand(r, 6, 100, lo=-4, hi=4),
            "output": np.zeros((6, 100), f32),
            "rows": i32(6),
            "cols": i32(100),
        },
        ("input", "output", "rows", "cols"),
        (6,),
        (32,),
        lambda d: {"output": _softmax(d["input"])},
    ),
    Case(
        "layernorm.cu",
        "layernorm",
        lambda r: {
            "input": rand(r, 5, 300),
            "gamma": rand(r, 300),
            "beta": rand(r, 300),
            "output": np.zeros((5, 300), f32),
            "n": i32(300),
            "eps": f32(1e-5),
        },
        ("input", "gamma", "beta", "output", "n", "eps"),
        (5,),
        (128,),
        _layernorm,
        atol=1e-4,
    ),
    Case(
        "gelu.cu",
        "gelu_vec4",
        lambda r: {"in": rand(r, 1003, lo=-3, hi=3), "out": np.zeros(1003, f32), "n": i32(1003)},
        ("in", "out", "n"),
        (1,),
        (256,),
        lambda d: {"out": _gelu_tanh(d["in"])},
    ),
    Case(
        "gelu.cu",
        "gelu_erf",
        lambda r: {"in": rand(r, 1003, lo=-3, hi=3), "out": np.zeros(1003, f32), "n": i32(1003)},
        ("in", "out", "n"),
        (4,),
        (256,),
        lambda d: {"out": _gelu_erf(d["in"])},
    ),
    Case(
        "scan.cu",
        "scan_inclusive",
        lambda r: {"g_idata": rand(r, 200), "g_odata": np.zeros(200, f32), "n": i32(200)},
        ("g_idata", "g_odata", "n"),
        (1,),
        (200,),
        lambda d: {"g_odata": np.cumsum(d["g_idata"]).astype(f32)},
        shared_bytes=2 * 200 * 4,
    ),
    Case(
        "histogram.cu",
        "histogram_smem",
        lambda r: {"data": r.integers(0, 256, 5000).astype(np.uint8), "hist": np.zeros(64, u32), "n": i32(5000)},
        ("data", "hist", "n"),
        (4,),
        (128,),
        _hist,
    ),
    Case(
        "stencil.cu",
        "jacobi2d",
        lambda r: {"in": rand(r, 40, 50), "out": np.zeros((40, 50), f32), "nx": i32(50), "ny": i32(40)},
        ("in", "out", "nx", "ny"),
        (4, 3),
        (16, 16),
        lambda d: {"out": _jacobi(d["in"])},
    ),
    Case(
        "embedding.cu",
        "embedding_lookup",
        lambda r: {
            "ids": r.integers(0, 50, 12).astype(i32),
            "table": rand(r, 50, 40),
            "out": np.zeros((12, 40), f32),
            "vocab": i32(50),
            "dim": i32(40),
        },
        ("ids", "table", "out", "vocab", "dim"),
        (12,),
        (32,),
        lambda d: {"out": d["table"][d["ids"]]},
    ),
    Case(
        "attention.cu",
        "attention_scores_64",
        lambda r: {
            "Q": rand(r, 20, 64),
            "K": rand(r, 20, 64),
            "S": np.zeros((20, 20), f32),
            "seq": i32(20),
            "scale": f32(0.125),
        },
        ("Q", "K", "S", "seq", "scale"),
        (20,),
        (32,),
        _attention,
    ),
    Case(
        "gemv.cu",
        "gemv_warp",
        lambda r: {"A": rand(r, 10, 75), "x": rand(r, 75), "y": np.zeros(10, f32), "rows": i32(10), "cols": i32(75)},
        ("A", "x", "y", "rows", "cols"),
        (3,),
        (128,),
        lambda d: {"y": d["A"] @ d["x"]},
    ),
    Case(
        "elementwise.cu",
        "swish",
        lambda r: {"x": rand(r, 500, lo=-5, hi=5), "y": np.zeros(500, f32), "n": i32(500)},
        ("x", "y", "n"),
        (2,),
        (256,),
        lambda d: {"y": d["x"] / (1 + np.exp(-d["x"]))},
    ),
    Case(
        "elementwise.cu",
        "bias_relu",
        lambda r: {"x": rand(r, 7, 90), "bias": rand(r, 90), "rows": i32(7), "cols": i32(90)},
        ("x", "bias", "rows", "cols"),
        (2, 7),
        (64,),
        lambda d: {"x": np.maximum(d["x"] + d["bias"], 0)},
    ),
    Case(
        "elementwise.cu",
        "clamp01",
        lambda r: {"x": rng_f64(r, 300), "y": np.zeros(300, np.float64), "n": i32(300)},
        ("x", "y", "n"),
        (2,),
        (256,),
        lambda d: {"y": np.clip(d["x"], 0, 1)},
    ),
    Case(
        "conv1d.cu",
        "conv1d_tiled_3",
        lambda r: {"in": rand(r, 300), "filter": rand(r, 7), "out": np.zeros(300, f32), "n": i32(300)},
        ("in", "filter", "out", "n"),
        (3,),
        (128,),
        _conv1d,
        shared_bytes=(128 + 6) * 4,
    ),
    Case(
        "dot.cu",
        "dot_product",
        lambda r: {"a": rand(r, 3000), "b": rand(r, 3000), "result": np.zeros(1, f32), "n": i32(3000)},
        ("a", "b", "result", "n"),
        (4,),
        (256,),
        lambda d: {"result": np.array([d["a"] @ d["b"]], f32)},
        atol=1e-3,
    ),
    Case(
        "conv2d.cu",
        "conv2d_tiled",
        lambda r: {
            "in": rand(r, 37, 45),
            "filter": rand(r, 25),
            "out": np.zeros((37, 45), f32),
            "width": i32(45),
            "height": i32(37),
        },
        ("in", "filter", "out", "width", "height"),
        (3, 3),
        (16, 16),
        _conv2d,
    ),
    Case(
        "batched_gemv.cu",
        "batched_gemv_vec4",
        _batched_gemv,
        ("A", "x", "y", "rows", "cols"),
        (3, 3),  # 4 rows (warps) per block of 128, one block row per batch
        (128,),
        lambda d: {"y": np.einsum("brc,bc->br", d["A"], d["x"]).astype(f32)},
    ),
    Case(
        "compact.cu",
        "compact_positive",
        lambda r: {"in": rand(r, 1000), "out": np.zeros(1000, f32), "count": np.zeros(1, i32), "n": i32(1000)},
        ("in", "out", "count", "n"),
        (4,),
        (256,),
        # warps claim their slots in whatever order their atomics land: the kept values, as a set
        lambda d: {
            "out": np.sort(np.pad(d["in"][d["in"] > 0], (0, 1000 - int((d["in"] > 0).sum())))),
            "count": np.array([(d["in"] > 0).sum()], i32),
        },  # fmt: skip
        view=lambda d: {"out": np.sort(d["out"]), "count": d["count"]},
    ),
    Case(
        "compact.cu",
        "flags_to_bits",
        lambda r: {"flags": r.integers(0, 2, 300).astype(i32), "bits": np.zeros(10, u32), "n": i32(300)},
        ("flags", "bits", "n"),
        (2,),
        (256,),
        lambda d: {"bits": _bitmask(d["flags"], 10)},
    ),
]


def rng_f64(r, n):
    return r.uniform(-0.5, 1.5, n)
