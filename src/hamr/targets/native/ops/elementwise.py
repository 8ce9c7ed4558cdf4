"""Elementwise ops as C expressions; the fuser chains them into one loop per group."""

from __future__ import annotations

import math

import onnx_ir as ir

from hamr.ir.domains import is_onnx_domain
from hamr.ir.dtypes import COMPUTE_FLOATS, CTYPES, INTEGERS, SIGNED, STORAGE_FLOATS, ctype, itemsize
from hamr.targets.native.ops.base import Lowering, broadcast_shapes
from hamr.targets.native.ops.registry import register
from hamr.targets.native.render.template import render


def lit(value: float, t: str) -> str:
    """A literal of C type `t` (f32 literals keep single-precision arithmetic)."""
    if math.isnan(value):
        return f"(({t})NAN)"
    if math.isinf(value):
        return f"(({t})(INFINITY))" if value > 0 else f"(({t})(-INFINITY))"
    return f"(({t}){float(value)!r})"


class Elementwise(Lowering):
    kind = "elementwise"
    element_dtypes = frozenset(CTYPES) | STORAGE_FLOATS  # storage floats are loaded as f32 by the fuser

    def check(self, node):
        for i in range(len(node.inputs)):
            if node.has_input(i) and node.in_dtype(i) not in self.element_dtypes:
                return f"dtype {node.in_dtype(i)}"
        for i in range(len(node.outputs)):
            if node.out_dtype(i) not in self.element_dtypes:
                return f"dtype {node.out_dtype(i)}"
        return self.check_more(node)

    def check_more(self, node):
        return None

    def infer(self, node, pc):
        shapes = [pc.shape(name) for name in node.inputs if name]
        return [broadcast_shapes(*shapes)]


def _unary(name: str, template: str, float_only: bool = False):
    """`template` uses $x for the input and $T for its C type."""

    class Unary(Elementwise):
        ops = (name,)

        def check_more(self, node):
            if float_only and node.in_dtype(0) not in COMPUTE_FLOATS:
                return f"dtype {node.in_dtype(0)}"
            return None

        def expr(self, node, args):
            return [render(template, x=args[0], T=ctype(node.out_dtype()))]

    Unary.__name__ = name
    register(Unary)


for _name, _template, _float in [
    ("Abs", "(($T)($x < 0 ? -$x : $x))", False),
    ("Neg", "(($T)(-$x))", False),
    ("Exp", "H_EXP($x)", True),
    ("Log", "H_LOG($x)", True),
    ("Sqrt", "sqrt($x)", True),
    ("Sin", "sin($x)", True),
    ("Cos", "cos($x)", True),
    ("Tan", "tan($x)", True),
    ("Asin", "asin($x)", True),
    ("Acos", "acos($x)", True),
    ("Atan", "atan($x)", True),
    ("Sinh", "sinh($x)", True),
    ("Cosh", "cosh($x)", True),
    ("Asinh", "asinh($x)", True),
    ("Acosh", "acosh($x)", True),
    ("Atanh", "atanh($x)", True),
    ("Erf", "H_ERF($x)", True),
    ("Tanh", "H_TANH($x)", True),
    ("Floor", "floor($x)", True),
    ("Ceil", "ceil($x)", True),
    ("Round", "rint($x)", True),
    ("Reciprocal", "(($T)1 / $x)", True),
    ("Sigmoid", "H_SIGMOID($x)", True),
    ("Softplus", "H_LOG(H_EXP($x) + ($T)1)", True),
    ("Softsign", "($x / (($T)1 + fabs($x)))", True),
    ("Mish", "($x * H_TANH(H_LOG(($T)1 + H_EXP($x))))", True),
    ("HardSwish", "($x * H_MAX(($T)0, H_MIN(($T)1, $x / ($T)6 + ($T)0.5)))", True),
    ("Relu", "(($T)($x > 0 ? $x : 0))", False),
    ("Sign", "(($T)(($x > 0) - ($x < 0)))", False),
    ("Not", "((b8)!$x)", False),
    ("BitwiseNot", "(($T)~$x)", False),
    ("IsNaN", "((b8)($x != $x))", True),
    ("Identity", "$x", False),
]:
    _unary(_name, _template, _float)


class AttrUnary(Elementwise):
    """Unary ops whose expression depends on float attributes."""

    def expr(self, node, args):
        x, t = args[0], ctype(node.out_dtype())
        return [self.template(node, x, t)]

    def check_more(self, node):
        return None if node.in_dtype(0) in COMPUTE_FLOATS else f"dtype {node.in_dtype(0)}"


@register
class LeakyRelu(AttrUnary):
    ops = ("LeakyRelu",)

    def template(self, node, x, t):
        return f"({x} < 0 ? {lit(node.attr('alpha', 0.01), t)} * {x} : {x})"


@register
class Elu(AttrUnary):
    ops = ("Elu",)

    def template(self, node, x, t):
        return f"({x} < 0 ? {lit(node.attr('alpha', 1.0), t)} * (H_EXP({x}) - ({t})1) : {x})"


@register
class Celu(AttrUnary):
    ops = ("Celu",)

    def template(self, node, x, t):
        a = lit(node.attr("alpha", 1.0), t)
        return f"(H_MAX(({t})0, {x}) + H_MIN(({t})0, {a} * (H_EXP({x} / {a}) - ({t})1)))"


@register
class Selu(AttrUnary):
    ops = ("Selu",)

    def template(self, node, x, t):
        a = lit(node.attr("alpha", 1.67326319217681884765625), t)
        g = lit(node.attr("gamma", 1.05070102214813232421875), t)
        return f"({x} <= 0 ? {g} * ({a} * H_EXP({x}) - {a}) : {g} * {x})"


@register
class ThresholdedRelu(AttrUnary):
    ops = ("ThresholdedRelu",)

    def template(self, node, x, t):
        return f"({x} > {lit(node.attr('alpha', 1.0), t)} ? {x} : ({t})0)"


@register
class HardSigmoid(AttrUnary):
    ops = ("HardSigmoid",)

    def template(self, node, x, t):
        a, b = lit(node.attr("alpha", 0.2), t), lit(node.attr("beta", 0.5), t)
        return f"H_MAX(({t})0, H_MIN(({t})1, {a} * {x} + {b}))"


@register
class Shrink(Elementwise):
    ops = ("Shrink",)

    def expr(self, node, args):
        x, t = args[0], ctype(node.out_dtype())
        bias, lambd = node.attr("bias", 0.0), node.attr("lambd", 0.5)
        return [
            f"(({t})({x} < -{lit(lambd, 'f64')} ? (f64){x} + {lit(bias, 'f64')} : "
            f"({x} > {lit(lambd, 'f64')} ? (f64){x} - {lit(bias, 'f64')} : 0)))"
        ]


@register
class Gelu(AttrUnary):
    ops = ("Gelu",)

    def template(self, node, x, t):
        if node.attr("approximate", "none") == "tanh":
            k = lit(math.sqrt(2 / math.pi), t)
            return f"(({t})0.5 * {x} * (({t})1 + H_TANH({k} * ({x} + ({t})0.044715 * {x} * {x} * {x}))))"
        return f"(({t})0.5 * {x} * (({t})1 + H_ERF({x} * {lit(1 / math.sqrt(2), t)})))"


@register
class IsInf(AttrUnary):
    ops = ("IsInf",)

    def template(self, node, x, t):
        pos, neg = node.attr("detect_positive", 1), node.attr("detect_negative", 1)
        terms = []
        if pos:
            terms.append(f"{x} == INFINITY")
        if neg:
            terms.append(f"{x} == -INFINITY")
        return f"((b8)({' || '.join(terms) or '0'}))"


def _binary(name: str, template: str, ints_guard: str | None = None):
    class Binary(Elementwise):
        ops = (name,)

        def expr(self, node, args):
            t = ctype(node.out_dtype())
            a, b = args[0], args[1]
            if ints_guard and node.in_dtype(0) in INTEGERS:
                return [render(ints_guard, a=a, b=b, T=t)]
            return [render(template, a=a, b=b, T=t)]

    Binary.__name__ = name
    register(Binary)


for _name, _template, _guard in [
    ("Add", "(($T)($a + $b))", None),
    ("Sub", "(($T)($a - $b))", None),
    ("Mul", "(($T)($a * $b))", None),
    ("Div", "(($T)($a / $b))", "(($T)($b == 0 ? 0 : $a / $b))"),
    ("Equal", "((b8)($a == $b))", None),
    ("Less", "((b8)($a < $b))", None),
    ("LessOrEqual", "((b8)($a <= $b))", None),
    ("Greater", "((b8)($a > $b))", None),
    ("GreaterOrEqual", "((b8)($a >= $b))", None),
    ("And", "((b8)($a && $b))", None),
    ("Or", "((b8)($a || $b))", None),
    ("Xor", "((b8)((!$a) != (!$b)))", None),
    ("BitwiseAnd", "(($T)($a & $b))", None),
    ("BitwiseOr", "(($T)($a | $b))", None),
    ("BitwiseXor", "(($T)($a ^ $b))", None),
    ("PRelu", "(($T)($a < 0 ? $b * $a : $a))", None),
]:
    _binary(_name, _template, _guard)


@register
class Pow(Elementwise):
    ops = ("Pow",)

    def expr(self, node, args):
        t = ctype(node.out_dtype())
        if node.out_dtype() in COMPUTE_FLOATS:
            power = _constant_power(node)
            if power is not None:
                return [power.format(x=f"(({t}){args[0]})")]
            return [f"(({t})pow(({t}){args[0]}, ({t}){args[1]}))"]
        return [f"(({t})pow((f64){args[0]}, (f64){args[1]}))"]


# exponents whose pow() is exactly a product (x^2 in the variance of exported LayerNorms)
_POWERS = {1.0: "{x}", 2.0: "({x} * {x})"}


def _constant_power(node) -> str | None:
    exponent = node.const(1)
    if exponent is None:
        exponent = _constant_node_value(node.node.inputs[1])
    if exponent is None or exponent.size != 1:
        return None
    return _POWERS.get(float(exponent.reshape(-1)[0]))


def _constant_node_value(value):
    """The tensor of a `Constant` node's `value` (in a subgraph, where constant folding leaves them as nodes)."""
    producer = value.producer() if value is not None else None
    if producer is None or producer.op_type != "Constant" or not is_onnx_domain(producer.domain):
        return None
    attr = producer.attributes.get("value")
    return attr.value.numpy() if attr is not None and attr.type == ir.AttributeType.TENSOR else None


@register
class Mod(Elementwise):
    ops = ("Mod",)

    def expr(self, node, args):
        a, b, t = args[0], args[1], ctype(node.out_dtype())
        if node.out_dtype() in COMPUTE_FLOATS:
            if node.attr("fmod", 0):
                return [f"fmod({a}, {b})"]
            return [f"H_PYMODF({a}, {b}, {t})"]
        if node.attr("fmod", 0) or node.out_dtype() not in SIGNED:
            return [f"(({t})({b} == 0 ? 0 : {a} % {b}))"]
        return [f"H_PYMODI({a}, {b}, {t})"]


@register
class BitShift(Elementwise):
    """Shifts outside [0, width) give 0 (left) or the sign fill (right), as numpy does."""

    ops = ("BitShift",)

    def expr(self, node, args):
        a, b, t = args[0], args[1], ctype(node.out_dtype())
        bits = 8 * itemsize(node.out_dtype())
        inside = f"({b} >= 0 && {b} < {bits})"
        if node.attr("direction", "LEFT") in ("LEFT", b"LEFT"):
            return [f"(({t})({inside} ? (u64){a} << {b} : 0))"]
        return [f"(({t})({inside} ? {a} >> {b} : ({a} < 0 ? -1 : 0)))"]


class Variadic(Elementwise):
    def expr(self, node, args):
        t = ctype(node.out_dtype())
        present = [a for a in args if a]
        acc = present[0]
        for other in present[1:]:
            acc = self.combine(acc, other, t, node.out_dtype())
        return [self.finish(acc, len(present), t)]

    def finish(self, acc, count, t):
        return f"(({t}){acc})"


@register
class Sum(Variadic):
    ops = ("Sum",)

    def combine(self, a, b, t, dtype):
        return f"({a} + {b})"


@register
class Mean(Variadic):
    ops = ("Mean",)

    def combine(self, a, b, t, dtype):
        return f"({a} + {b})"

    def finish(self, acc, count, t):
        return f"(({t})({acc} / ({t}){count}))"


@register
class Max(Variadic):
    ops = ("Max",)

    def combine(self, a, b, t, dtype):
        return f"H_MAXNAN({a}, {b})" if dtype in COMPUTE_FLOATS else f"H_MAX({a}, {b})"


@register
class Min(Variadic):
    ops = ("Min",)

    def combine(self, a, b, t, dtype):
        return f"H_MINNAN({a}, {b})" if dtype in COMPUTE_FLOATS else f"H_MIN({a}, {b})"


@register
class Where(Elementwise):
    ops = ("Where",)

    def expr(self, node, args):
        return [f"({args[0]} ? {args[1]} : {args[2]})"]


@register
class Clip(Elementwise):
    ops = ("Clip",)

    def expr(self, node, args):
        t = ctype(node.out_dtype())
        x = args[0]
        lo = args[1] if len(args) > 1 and args[1] else None
        hi = args[2] if len(args) > 2 and args[2] else None
        if node.opset < 11:
            lo, hi = lit(node.attr("min", -3.4028234663852886e38), t), lit(node.attr("max", 3.4028234663852886e38), t)
        if lo:
            x = f"({x} < {lo} ? {lo} : {x})"
        if hi:
            x = f"({x} > {hi} ? {hi} : {x})"
        return [f"(({t}){x})"]
