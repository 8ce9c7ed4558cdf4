"""Einsum as one generic loop kernel: one work item per output element sums over the contracted letters.

The equation is parsed at compile time (ellipses expand to one letter per broadcast dim, from
the inputs' static ranks). Each input reads the element at sum(coordinate x stride) over the
letters, where a letter the input lacks or broadcasts has stride 0 and a letter repeated in one
input (a diagonal) adds its strides.
"""

from __future__ import annotations

from hamr.ir.dtypes import NUMERIC, ctype
from hamr.targets.native.ops.base import Kernel, Lowering, numel, strides_of
from hamr.targets.native.ops.registry import register


def parse(equation: str, ranks: list[int]) -> tuple[list[list[str]], list[str]]:
    """(letters of each input, letters of the output); ellipsis dims become "0", "1", ... (right-aligned)."""
    equation = equation.replace(" ", "")
    lhs, arrow, rhs = equation.partition("->")
    terms = lhs.split(",")
    if len(terms) != len(ranks):
        raise ValueError(f"equation {equation!r} names {len(terms)} inputs, the node has {len(ranks)}")
    spans = [rank - len(term.replace("...", "")) if "..." in term else 0 for term, rank in zip(terms, ranks)]
    width = max(spans, default=0)
    ell = [str(d) for d in range(width)]
    inputs = []
    for term, rank, span in zip(terms, ranks, spans):
        head, dots, tail = term.partition("...")
        letters = list(head) + (ell[width - span :] if dots else []) + list(tail)
        if len(letters) != rank or span < 0 or not all(c.isalpha() or c.isdigit() for c in letters):
            raise ValueError(f"term {term!r} of {equation!r} does not fit rank {rank}")
        inputs.append(letters)
    if arrow:
        head, dots, tail = rhs.partition("...")
        output = list(head) + (ell if dots else []) + list(tail)
    else:
        counts = {c: sum(letters.count(c) for letters in inputs) for term in terms for c in term if c.isalpha()}
        output = ell + sorted(c for c, n in counts.items() if n == 1)
    known = {c for letters in inputs for c in letters}
    if len(set(output)) != len(output) or not set(output) <= known:
        raise ValueError(f"output of {equation!r} repeats or invents a letter")
    return inputs, output


@register
class Einsum(Lowering):
    ops = ("Einsum",)
    dtypes = NUMERIC

    def check(self, node):
        reason = super().check(node)
        if reason is None and any(node.in_dtype(i) != node.in_dtype(0) for i in range(len(node.inputs))):
            reason = "mixed dtypes"
        if reason is None and any(node.in_rank(i) is None for i in range(len(node.inputs))):
            reason = "unknown rank"
        if reason is None:
            try:
                self.letters(node)
            except ValueError as exc:
                reason = str(exc)
        return reason

    def letters(self, node) -> tuple[list[list[str]], list[str], list[str]]:
        """(input letters, output letters, summed letters)."""
        equation = node.attr("equation", b"")
        equation = equation.decode() if isinstance(equation, bytes) else equation
        inputs, output = parse(equation, [node.in_rank(i) for i in range(len(node.inputs))])
        summed = sorted({c for letters in inputs for c in letters} - set(output))
        return inputs, output, summed

    def sizes(self, node, pc) -> dict[str, int]:
        inputs, _, _ = self.letters(node)
        size: dict[str, int] = {}
        for name, letters in zip(node.inputs, inputs):
            for c, d in zip(letters, pc.shape(name)):
                d = int(d)
                if size.get(c, 1) not in (1, d) and d != 1:
                    raise ValueError(f"letter {c!r} has sizes {size[c]} and {d}")
                size[c] = max(size.get(c, d), d)
        return size

    def infer(self, node, pc):
        size = self.sizes(node, pc)
        return [tuple(size[c] for c in self.letters(node)[1])]

    def kernel(self, node):
        inputs, output, summed = self.letters(node)
        order = output + summed
        no, ns, nl = len(output), len(summed), len(output) + len(summed)
        t = ctype(node.in_dtype(0))
        names = list(node.inputs)

        def params(pc):
            size = self.sizes(node, pc)
            dims = [size[c] for c in order]
            values = [numel(dims[:no]), *dims, numel(dims[no:])]
            for name, letters in zip(names, inputs):
                shape = pc.shape(name)
                stride = dict.fromkeys(order, 0)
                for c, d, s in zip(letters, shape, strides_of(shape)):
                    if int(d) != 1 or size[c] == 1:
                        stride[c] += s
                values += [stride[c] for c in order]
            return values

        strides_at = lambda i, k: f"p[{2 + nl + i * nl + k}]"  # noqa: E731
        lines = []
        if no:
            lines.append("i64 r_ = gid;")
            for k in range(no - 1, 0, -1):
                lines.append(f"const i64 c{k} = r_ % p[{1 + k}]; r_ /= p[{1 + k}];")
            lines.append("const i64 c0 = r_;")
        for i in range(len(names)):
            base = " + ".join(f"c{k} * {strides_at(i, k)}" for k in range(no)) or "0"
            lines.append(f"const i64 b{i}_ = {base};")
        lines.append(f"{t} acc_ = 0; for (i64 s_ = 0; s_ < p[{1 + nl}]; s_++) {{ i64 q_ = s_;")
        for k in range(nl - 1, no, -1):
            lines.append(f"const i64 c{k} = q_ % p[{1 + k}]; q_ /= p[{1 + k}];")
        if ns:
            lines.append(f"const i64 c{no} = q_;")
        reads = []
        for i in range(len(names)):
            offset = " + ".join([f"b{i}_"] + [f"c{k} * {strides_at(i, k)}" for k in range(no, nl)])
            reads.append(f"in{i}[{offset}]")
        lines.append(f"acc_ += {' * '.join(reads)}; }} out0[gid] = acc_;")
        shape_known = [node.in_shape(i) for i in range(len(names))]
        grain = 1
        for c in summed:
            for letters, shape in zip(inputs, shape_known):
                if c in letters and isinstance(shape[letters.index(c)], int):
                    grain *= shape[letters.index(c)]
                    break
        n_params = 2 + nl + len(names) * nl
        return Kernel(
            names, [node.outputs[0]], n_params, params, body=" ".join(lines), label="einsum", grain=max(grain, 1)
        )
