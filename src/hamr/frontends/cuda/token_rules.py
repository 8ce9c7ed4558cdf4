"""Context-free spellings, token by token: builtins, intrinsics, math, types. Also used on #define bodies."""

from __future__ import annotations

from hamr.frontends.cuda import tables as tb
from hamr.frontends.cuda.model import Refusal
from hamr.frontends.cuda.tokens import Edits, matching, split_args


class TokenRules:
    def __init__(self, rw, e: Edits, note, subst: dict[str, str]):
        self.rw, self.e, self.note, self.subst = rw, e, note, subst
        self.t = rw.t

    def apply(self, i: int, j: int) -> None:
        t, e = self.t, self.e
        k = i
        while k < j:
            if k in e.repl:
                k += 1
                continue
            s = t[k].text
            nxt = t[k + 1].text if k + 1 < j else ""
            line = t[k].line
            if s in tb.BUILTIN_VARS:
                if nxt != "." or k + 2 >= j or t[k + 2].text not in tb.AXES:
                    raise Refusal(line, s, "use it as " + s + ".x/.y/.z")
                e.replace(k, f"((unsigned){tb.BUILTIN_VARS[s]}({tb.AXES[t[k + 2].text]}))")
                e.delete(k + 1, k + 3)
                k += 3
                continue
            if s in self.subst and (k == 0 or t[k - 1].text not in (".", "->")):
                value = self.subst[s]
                if nxt == "(" and not value[:1].isdigit() and not value.startswith("-"):
                    e.replace(k, f"(({value})")  # T(x), T a type: a C cast
                    e.after(matching(t, k + 1, "(", ")"), ")")
                else:
                    e.replace(k, value)
            elif s == "__syncthreads" and nxt == "(":
                rp = matching(t, k + 1, "(", ")")
                e.replace(k, "barrier(CLK_LOCAL_MEM_FENCE | CLK_GLOBAL_MEM_FENCE)")
                e.delete(k + 1, rp + 1)
                self.note(line, "__syncthreads", "barrier")
                k = rp + 1
                continue
            elif s == "__syncwarp" and nxt == "(":
                rp = matching(t, k + 1, "(", ")")
                mask = self.rw.text(k + 2, rp).replace(" ", "")
                if mask and self.resolve(mask) not in tb.FULL_MASKS:
                    raise Refusal(line, "__syncwarp", f"partial mask {mask}")
                e.replace(k, "H_SYNCWARP()")
                e.delete(k + 1, rp + 1)
                k = rp + 1
                continue
            elif (s in tb.SHUFFLES or s in tb.LEGACY_SHUFFLES) and nxt == "(":
                self.shuffle(k, s, line)
            elif s in tb.VOTES and nxt == "(":
                self.vote(k, s, line)
            elif s in tb.BIT_INTRINSICS and nxt == "(":
                e.replace(k, tb.BIT_INTRINSICS[s])
            elif s in tb.REFUSED and self.refused_here(s, nxt):
                raise Refusal(line, s, tb.REFUSED[s])
            elif s in tb.TEXTURE_CALLS or (s.startswith("texture") and nxt == "<"):
                raise Refusal(line, s, "textures/surfaces are not in the portable form")
            elif s == "<<<":
                raise Refusal(line, "kernel launch", "dynamic parallelism (a kernel launching a kernel)")
            elif s in tb.MATH and nxt == "(" and s not in self.rw.funcs:
                e.replace(k, tb.MATH[s])
            elif s == "__ldg" and nxt == "(":
                e.replace(k, "(*")
                e.after(matching(t, k + 1, "(", ")"), ")")
            elif s in tb.BINARY_INTRINSICS and nxt == "(":
                self.binary(k, tb.BINARY_INTRINSICS[s])
            elif s == "__frcp_rn" and nxt == "(":
                e.replace(k, "(1.0f /")
                e.after(matching(t, k + 1, "(", ")"), ")")
            elif s == "__saturatef" and nxt == "(":
                e.replace(k, "fmin(fmax(")
                e.after(matching(t, k + 1, "(", ")"), ", 0.0f), 1.0f)")
            elif s in tb.WORDS:
                e.replace(k, tb.WORDS[s])
            elif s in tb.TYPES:
                e.replace(k, tb.TYPES[s])
            elif s in tb.DROPPED:
                e.delete(k)
            elif s == "long" and nxt == "long":
                e.delete(k + 1)
                k += 2
                continue
            elif s == "__launch_bounds__" and nxt == "(":
                rp = matching(t, k + 1, "(", ")")
                e.delete(k, rp + 1)
                k = rp + 1
                continue
            k += 1

    @staticmethod
    def refused_here(s: str, nxt: str) -> bool:
        if s in tb.REFUSED_CALLS:
            return nxt == "("
        if s in tb.REFUSED_TYPE_WORDS:
            return nxt.isidentifier() or nxt in ("*", "&")
        return True

    def resolve(self, text: str) -> str:
        seen = 0
        while text in self.rw.defines and seen < 8:
            text = self.rw.defines[text].replace(" ", "").strip("()")
            seen += 1
        return text

    def binary(self, k: int, op: str) -> None:
        """`f(a, b)` as `((a) op (b))`."""
        t, e = self.t, self.e
        rp = matching(t, k + 1, "(", ")")
        args = split_args(t, k + 1, rp)
        if len(args) != 2:
            raise Refusal(t[k].line, t[k].text, "expects two arguments")
        e.replace(k, "(")
        e.replace(args[0][1], f") {op} (")
        e.after(rp, ")")

    def shuffle(self, k: int, s: str, line: int) -> None:
        t, e = self.t, self.e
        rp = matching(t, k + 1, "(", ")")
        args = split_args(t, k + 1, rp)
        legacy = s in tb.LEGACY_SHUFFLES
        if not legacy:
            if len(args) < 3:
                raise Refusal(line, s, "expects (mask, value, lane)")
            mask = self.resolve(self.rw.text(*args[0]).replace(" ", ""))
            if mask not in tb.FULL_MASKS:
                raise Refusal(line, s, f"mask {self.rw.text(*args[0])} is not the full warp (0xffffffff)")
            e.delete(args[0][0], args[1][0])
            rest = args[1:]
        else:
            rest = args
        if len(rest) == 3:
            width = self.resolve(self.rw.text(*rest[2]).replace(" ", ""))
            if width not in ("32", "warpSize"):
                raise Refusal(line, s, f"width {self.rw.text(*rest[2])}: only full warps (32) convert")
            e.delete(rest[1][1], rest[2][1])
        new = (tb.SHUFFLES | tb.LEGACY_SHUFFLES)[s]
        e.replace(k, new)
        self.note(line, s, new)

    def vote(self, k: int, s: str, line: int) -> None:
        """`__ballot_sync(mask, p)` as `H_BALLOT(p)`, the full warp's mask only."""
        t, e = self.t, self.e
        rp = matching(t, k + 1, "(", ")")
        args = split_args(t, k + 1, rp)
        if len(args) != 2:
            raise Refusal(line, s, "expects (mask, predicate)")
        mask = self.resolve(self.rw.text(*args[0]).replace(" ", ""))
        if mask not in tb.FULL_MASKS:
            raise Refusal(line, s, f"mask {self.rw.text(*args[0])} is not the full warp (0xffffffff)")
        e.delete(args[0][0], args[1][0])
        e.replace(k, tb.VOTES[s])
        self.note(line, s, tb.VOTES[s])
