"""The functions of one parsed file rewritten on demand: one instance per template arguments and pointer address
spaces, memoized, each kernel checked for divergence the emulation cannot run."""

from __future__ import annotations

from hamr.frontends.cuda.divergence import Divergence
from hamr.frontends.cuda.function_rewriter import FunctionRewriter
from hamr.frontends.cuda.model import LOCAL, Func, Instance, Refusal
from hamr.frontends.cuda.parse import Parsed, cindex
from hamr.frontends.cuda.tokens import TokenView, sanitize
from hamr.frontends.cuda.uniformity import SHUFFLE_NAMES, thread_sources, users


class Rewriter(TokenView):
    def __init__(self, parsed: Parsed, funcs: dict[str, Func], defines: dict[str, str]):
        super().__init__(parsed)
        self.funcs = funcs
        self.defines = defines
        self.ci = cindex()
        self.instances: dict[tuple, Instance] = {}
        self.names: dict[tuple, tuple] = {}
        self.stack: list[str] = []
        self.shfl_funcs = users(self, funcs, SHUFFLE_NAMES)
        self.thread_sources = thread_sources(self, funcs, defines)
        self.divergence = Divergence(self)

    def instance(self, func: Func, subst: dict[str, str], name: str, spaces: tuple = ()) -> Instance:
        key = (func.name, tuple(sorted(subst.items())), spaces)
        if key in self.instances:
            return self.instances[key]
        if func.name in self.stack:
            raise Refusal(self.t[func.name_tok].line, f"call to {func.name}", "recursion")
        self.stack.append(func.name)
        try:
            inst = Instance(func, subst, name, spaces)
            FunctionRewriter(self, inst).run()
            if func.kind == "kernel":
                self.divergence.kernel(func)
        finally:
            self.stack.pop()
        self.instances[key] = inst
        return inst

    def helper_name(self, func: Func, targs: list[str], spaces: tuple) -> str:
        base = func.name + (f"_{sanitize(targs)}" if targs else "")
        first = self.names.setdefault((func.name, tuple(targs)), spaces)
        if first == spaces:
            return base
        return base + "_" + "".join("l" if s == LOCAL else "g" for s in spaces if s)
