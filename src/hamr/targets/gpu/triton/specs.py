"""Which launches of a GPU lowering run as a Triton kernel, and with what: a spec per distinct kernel.

A float32 MatMul, Gemm or Conv anchor (a Conv with at least MIN_CONV_CHANNELS output channels per group)
qualifies when its fused epilogue is a chain the Triton kernel applies in registers: each node takes the
running value, alone (Relu, Sigmoid, Tanh, Gelu, LeakyRelu, Exp, Neg, Abs, Erf, HardSigmoid, HardSwish; SiLU
as Sigmoid then Mul) or with one float32 operand that is a scalar, a per-column vector, a per-row vector or
the output's own shape (Add, Sub, Mul, Div); up to three of the chain's values may leave the kernel. Any
other launch keeps its dialect kernel. Specs are plain JSON: the variant records them, and a loader regenerates
them to compare.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

from hamr.ir.node_view import NodeView
from hamr.targets.native.assemble import Launch, Lowered
from hamr.targets.native.ops.base import static_equal

MAX_STEPS = 4  # S0..S3 in kernels.gemm
MAX_OPERANDS = 4  # E0..E3
MAX_OUTPUTS = 3  # OUT, O1, O2
BINARY = {"Add": 1, "Sub": 2, "Mul": 3, "Div": 4}
UNARY = {
    "Relu": 10,
    "Sigmoid": 11,
    "Tanh": 12,
    "LeakyRelu": 15,
    "Exp": 16,
    "Neg": 17,
    "Abs": 18,
    "Erf": 19,
    "HardSigmoid": 21,
    "HardSwish": 22,
}
SILU = 20  # Sigmoid, then Mul of its input by it: one step
GELU = {"none": 13, "tanh": 14}
SCALAR, COLUMN, ROW, FULL = range(4)
# One tile configuration for every architecture: 64 x 64 outputs, 32 deep, four warps, three stages in flight
# (32 KiB of shared memory, under the 48 KiB a kernel gets without opting in).
CONFIG = {"BM": 64, "BN": 64, "BK": 32, "num_warps": 4, "num_stages": 3}
# IEEE float32 products on both vendors (NVIDIA's default is TF32, AMD's IEEE): results match the other targets.
PRECISION = "ieee"


@dataclass(frozen=True)
class Step:
    op: int
    mode: int = 0
    slot: int = 0
    swap: int = 0
    value: float = 0.0  # LeakyRelu's and HardSigmoid's alpha
    value2: float = 0.0  # HardSigmoid's beta

    @property
    def code(self) -> int:
        return self.op * 1000 + self.mode * 100 + self.slot * 10 + self.swap


def specs_for(lowered: Lowered, config: dict | None = None) -> list[dict]:
    """The distinct Triton kernels of `lowered`, each with the launches that run it (named hamr_t0, hamr_t1...)."""
    nodes = {n.name: n for segment in lowered.all_segments for item in segment.items for n in item.nodes}
    found: dict[str, dict] = {}
    for segment in lowered.all_segments:
        for launch in segment.launches:
            spec = anchor_spec(launch, nodes, config or CONFIG)
            if spec is None:
                continue
            key = json.dumps(spec, sort_keys=True)
            entry = found.setdefault(key, {"name": f"hamr_t{len(found)}", **spec, "launches": []})
            entry["launches"].append(launch.name)
    return list(found.values())


def launch_grid(spec: dict, params: list[int]) -> tuple[int, int, int]:
    """Blocks of one launch, from its parameter values: a tile of the output per block along x, and along y a
    batch item (MatMul), an (image, group) pair (Conv) or nothing (Gemm)."""
    bm, bn = spec["tile"]
    if spec["kernel"] == "conv":
        images, channels, groups = params[1], params[3], params[4]
        positions = params[8] * params[9] * params[10]
        return (-(-(channels // groups) // bm) * -(-positions // bn), images * groups, 1)
    m, n = params[1], params[2]
    batches = params[0] if spec["constexprs"]["GEMM"] == 0 else 1
    return (-(-m // bm) * -(-n // bn), batches, 1)


def digest(specs: list[dict]) -> str:
    return hashlib.sha256(json.dumps(specs, sort_keys=True).encode()).hexdigest()


def anchor_spec(launch: Launch, nodes: dict[str, NodeView], config: dict) -> dict | None:
    k = launch.kernel
    head = nodes.get(launch.nodes[0]) if launch.nodes else None
    if head is None or head.op not in ("MatMul", "Gemm", "Conv") or head.domain not in ("", "ai.onnx"):
        return None
    if not k.anchor or k.derived or head.in_dtype(0) != "float32":
        return None
    if head.op == "Conv":
        return conv_spec(launch, head, [nodes[name] for name in launch.nodes[1:]], config)
    return gemm_spec(launch, head, [nodes[name] for name in launch.nodes[1:]], config)


def _chain(launch: Launch, head: NodeView, chain: list[NodeView], conv: bool) -> tuple[int, list[Step], dict] | None:
    """(the anchor's own inputs, the epilogue's steps, where each output is stored: W<stage> -> 1 + its index), or
    None where the epilogue is not a chain over the tile or a value that leaves it is not one of its stages."""
    k = launch.kernel
    own = k.own_args[0] if k.own_args else len(k.inputs)
    if len(k.outputs) > MAX_OUTPUTS or (k.own_args and k.own_args[1] != 1):
        return None
    found = epilogue_steps(chain, head.outputs[0], head.out_shape(0), k.inputs[own:], conv)
    if found is None:
        return None
    steps, stages = found
    if any(name not in stages for name in k.outputs):
        return None  # e.g. the Sigmoid inside a SiLU
    stores = {f"W{stage}": 0 for stage in range(MAX_STEPS + 1)}
    for index, name in enumerate(k.outputs):
        stores[f"W{stages.index(name)}"] = index + 1
    return own, steps, stores


def _signature(names: tuple[str, ...], present: set[str], constexprs: dict, operands: int, outputs: int) -> dict:
    """In the dialect kernel's argument order: its own inputs and first output, the epilogue's inputs, then its
    further outputs."""
    signature = {"P": "*i64", "poff": "i64"}
    signature.update({name: "*fp32" if name in present else "constexpr" for name in names})
    signature.update({f"E{i}": "*fp32" if i < operands else "constexpr" for i in range(MAX_OPERANDS)})
    signature.update({f"O{i}": "*fp32" if i < outputs else "constexpr" for i in range(1, MAX_OUTPUTS)})
    signature.update({name: "constexpr" for name in constexprs})
    return signature


def _spec(kernel: str, signature: dict, constexprs: dict, config: dict) -> dict:
    return {
        "kernel": kernel,
        "signature": signature,
        "constexprs": constexprs,
        "unused": [name for name, kind in signature.items() if kind == "constexpr" and name not in constexprs],
        "options": {"num_warps": config["num_warps"], "num_stages": config["num_stages"]},
        "tile": [config["BM"], config["BN"]],
    }


def _step_constexprs(steps: list[Step], config: dict) -> dict:
    steps = steps + [Step(0)] * (MAX_STEPS - len(steps))
    return {
        **{f"S{i}": s.code for i, s in enumerate(steps)},
        **{f"F{i}": float(s.value) for i, s in enumerate(steps)},
        **{f"G{i}": float(s.value2) for i, s in enumerate(steps)},
        "BM": config["BM"],
        "BN": config["BN"],
        "BK": config["BK"],
        "PRECISION": PRECISION,
    }


MIN_CONV_CHANNELS = 16  # output channels per group below which a Conv keeps its dialect kernel (a depthwise one)


def conv_spec(launch: Launch, head: NodeView, chain: list[NodeView], config: dict) -> dict | None:
    w = head.in_shape(1)
    group = int(head.attr("group", 1))
    if w is None or not all(isinstance(d, int) for d in w) or w[0] // group < MIN_CONV_CHANNELS:
        return None
    found = _chain(launch, head, chain, conv=True)
    if found is None:
        return None
    own, steps, stores = found
    has_bias = own == 3
    constexprs = {"HAS_BIAS": int(has_bias), **_step_constexprs(steps, config), **stores}
    present = {"X", "W", "OUT"} | ({"BIAS"} if has_bias else set())
    k = launch.kernel
    signature = _signature(("X", "W", "BIAS", "OUT"), present, constexprs, len(k.inputs) - own, len(k.outputs))
    return _spec("conv", signature, constexprs, config)


def gemm_spec(launch: Launch, head: NodeView, chain: list[NodeView], config: dict) -> dict | None:
    k = launch.kernel
    if head.op == "MatMul" and None in (head.in_rank(0), head.in_rank(1)):
        return None
    found = _chain(launch, head, chain, conv=False)
    if found is None or not _modes_fit(head, found[1]):
        return None
    own, steps, stores = found
    is_gemm = head.op == "Gemm"
    has_c = is_gemm and own == 3
    constexprs = {
        "GEMM": int(is_gemm),
        "R": 0 if is_gemm else max(head.in_rank(0), head.in_rank(1), 2) - 2,
        "TRANS_A": int(bool(head.attr("transA", 0))) if is_gemm else 0,
        "TRANS_B": int(bool(head.attr("transB", 0))) if is_gemm else 0,
        "ALPHA": float(head.attr("alpha", 1.0)) if is_gemm else 1.0,
        "BETA": float(head.attr("beta", 1.0)) if has_c else 0.0,
        **_step_constexprs(steps, config),
        **stores,
    }
    present = {"A", "B", "OUT"} | ({"C"} if has_c else set())
    signature = _signature(("A", "B", "C", "OUT"), present, constexprs, len(k.inputs) - own, len(k.outputs))
    return _spec("gemm", signature, constexprs, config)


def _modes_fit(head: NodeView, steps: list[Step]) -> bool:
    """Whether the output's last two axes are the GEMM's M and N, as a per-row or per-column operand assumes:
    not so where MatMul has a vector A (no M axis) or a vector B (no N axis)."""
    if head.op != "MatMul":
        return True
    modes = {s.mode for s in steps if s.op in BINARY.values()}
    if head.in_rank(1) == 1:
        return not modes & {COLUMN, ROW}
    return head.in_rank(0) != 1 or ROW not in modes


def epilogue_steps(
    chain: list[NodeView], acc: str, domain, operands: list[str], conv: bool
) -> tuple[list[Step], list[str]] | None:
    """The chain as steps over the running value, or None where a node is not one the Triton GEMM applies."""
    if len(operands) > MAX_OPERANDS:
        return None
    steps, stages, i = [], [acc], 0  # stages: the value after the anchor, then after each step
    while i < len(chain):
        node = chain[i]
        if _silu(node, chain[i + 1] if i + 1 < len(chain) else None, stages[-1]):
            steps.append(Step(SILU))
            stages.append(chain[i + 1].outputs[0])
            i += 2
            continue
        step = _step(node, stages[-1], domain, operands, conv)
        if step is None:
            return None
        steps.append(step)
        stages.append(node.outputs[0])
        i += 1
    return (steps, stages) if len(steps) <= MAX_STEPS else None


def _silu(node: NodeView, after: NodeView | None, current: str) -> bool:
    """Sigmoid of the running value, then Mul of the running value by it (x * sigmoid(x))."""
    return (
        node.op == "Sigmoid"
        and node.inputs == [current]
        and after is not None
        and after.op == "Mul"
        and sorted(after.inputs) == sorted([current, node.outputs[0]])
        and after.out_dtype(0) == "float32"
    )


def _step(node: NodeView, current: str, domain, operands: list[str], conv: bool) -> Step | None:
    if node.domain not in ("", "ai.onnx") or len(node.outputs) != 1 or node.out_dtype(0) != "float32":
        return None
    if node.op in BINARY and len(node.inputs) == 2:
        if node.inputs.count(current) != 1:
            return None
        other = 1 - node.inputs.index(current)
        name = node.inputs[other]
        mode = _mode(node.in_shape(other), domain, conv)
        if mode is None or node.in_dtype(other) != "float32" or name not in operands:
            return None
        return Step(BINARY[node.op], mode, operands.index(name), int(other == 0))
    if node.inputs[:1] != [current] or any(node.has_input(i) for i in range(1, len(node.inputs))):
        return None
    if node.op == "Gelu":
        op = GELU.get(node.attr("approximate", "none"))
        return Step(op) if op else None
    if node.op == "HardSigmoid":
        return Step(UNARY[node.op], value=float(node.attr("alpha", 0.2)), value2=float(node.attr("beta", 0.5)))
    if node.op in UNARY:
        return Step(UNARY[node.op], value=float(node.attr("alpha", 0.01)) if node.op == "LeakyRelu" else 0.0)
    return None


def _mode(shape, domain, conv: bool) -> int | None:
    """How the Triton kernel reads an operand of `shape` against its output's `domain`: a GEMM's (batch..., M, N),
    whose rows are M and columns N, or a Conv's (N, M, spatial...), whose rows are its channels and columns its
    positions."""
    if shape is None or domain is None or len(shape) > len(domain) or len(domain) < (3 if conv else 1):
        return None
    padded = (1,) * (len(domain) - len(shape)) + tuple(shape)
    if all(d == 1 for d in padded):
        return SCALAR
    if static_equal(padded, domain):
        return FULL
    rank = len(domain)
    rows, columns = ({1}, set(range(2, rank))) if conv else ({rank - 2} if rank >= 2 else set(), {rank - 1})
    for mode, axes in ((COLUMN, columns), (ROW, rows)):
        if axes and all(padded[a] == 1 for a in range(rank) if a not in axes):
            if static_equal([padded[a] for a in sorted(axes)], [domain[a] for a in sorted(axes)]):
                return mode
    return None
