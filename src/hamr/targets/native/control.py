"""If, Loop and Scan on the host side of a native program, their subgraphs run as native steps.

A control node decides which subgraph runs and how often; the program runs the subgraph's
steps (segments, fallback nodes, nested control nodes) through `run_body`, which returns
the subgraph's outputs. Values cross to the host only where the node must read them: the
condition, the trip count, the slices of a Scan and the outputs it stacks.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from hamr.errors import KernelError, first_line
from hamr.targets.native.assemble import Control, Lowered


@dataclass
class Body:
    """The runtime steps of one subgraph."""

    lowered: Lowered
    steps: list

    @property
    def inputs(self) -> list[str]:
        return self.lowered.inputs

    @property
    def outputs(self) -> list[str]:
        return self.lowered.outputs


class Scope(dict):
    """A subgraph's values over its enclosing scope's: what the body writes stays here, and a name it does
    not hold is looked up outside. A dict subclass, so a hit costs a C lookup (ChainMap raised and caught a
    KeyError per enclosing level on every outer read)."""

    __slots__ = ("outer",)

    def __init__(self, values: dict, outer: dict):
        super().__init__(values)
        self.outer = outer

    def __missing__(self, name: str) -> Any:
        return self.outer[name]

    def __contains__(self, name: object) -> bool:
        return dict.__contains__(self, name) or name in self.outer

    def get(self, name: str, default: Any = None) -> Any:
        return self[name] if name in self else default


RunBody = Callable[[Body, dict, dict], list]  # (body, outer env, the body's input values) -> its output values
ToHost = Callable[[Any, str], Any]


class ControlNode:
    def __init__(self, control: Control, bodies: dict[str, Body]):
        self.view = control.node
        self.name = self.view.name
        self.op = self.view.op
        self.bodies = bodies
        self.feeds = [i for i in self.view.inputs if i]

    def run(self, env: dict, run_body: RunBody, host: ToHost, device: str) -> None:
        try:
            outputs = getattr(self, f"_{self.op.lower()}")(env, run_body, host)
        except KernelError:
            raise
        except Exception as exc:
            detail = f"{type(exc).__name__}: {first_line(exc, with_type=False)}"
            raise KernelError(
                f"node '{self.name}' ({self.op}) failed on {device}: {detail}", self.name, device
            ) from exc
        for name, value in zip(self.view.outputs, outputs):
            if name:
                env[name] = value

    def _if(self, env: dict, run_body: RunBody, host: ToHost) -> list:
        cond = bool(np.asarray(host(env[self.view.inputs[0]], self.view.inputs[0])).reshape(-1)[0])
        return run_body(self.bodies["then_branch" if cond else "else_branch"], env, {})

    def _loop(self, env: dict, run_body: RunBody, host: ToHost) -> list:
        body = self.bodies["body"]
        inputs = self.view.inputs
        trips = int(np.asarray(host(env[inputs[0]], inputs[0]))) if inputs[0] else None
        cond = _truth(host(env[inputs[1]], inputs[1])) if len(inputs) > 1 and inputs[1] else True
        carried = [env[name] for name in inputs[2:]]
        n_carried = len(carried)
        scans: list[list] = [[] for _ in body.outputs[1 + n_carried :]]
        i = 0
        while cond and (trips is None or i < trips):
            feeds = {body.inputs[0]: np.array(i, dtype=np.int64), body.inputs[1]: np.array(cond)}
            feeds.update(zip(body.inputs[2:], carried))
            outs = run_body(body, env, feeds)
            cond = _truth(host(outs[0], body.outputs[0]))
            carried = outs[1 : 1 + n_carried]
            for scan, value, name in zip(scans, outs[1 + n_carried :], body.outputs[1 + n_carried :]):
                scan.append(np.asarray(host(value, name)))
            i += 1
        stacked = [
            np.stack(scan) if scan else _empty(body.lowered, name)
            for scan, name in zip(scans, body.outputs[1 + n_carried :])
        ]
        return carried + stacked

    def _scan(self, env: dict, run_body: RunBody, host: ToHost) -> list:
        body = self.bodies["body"]
        n_scan = int(self.view.attr("num_scan_inputs"))
        inputs = self.view.inputs
        n_state = len(inputs) - n_scan
        state = [env[name] for name in inputs[:n_state]]
        xs = [np.asarray(host(env[name], name)) for name in inputs[n_state:]]
        in_axes = self.view.attr("scan_input_axes") or [0] * n_scan
        in_dirs = self.view.attr("scan_input_directions") or [0] * n_scan
        xs = [np.moveaxis(x, axis % x.ndim, 0) for x, axis in zip(xs, in_axes)]
        length = xs[0].shape[0] if xs else 0
        if any(x.shape[0] != length for x in xs):
            raise ValueError(f"scan inputs differ in length: {[x.shape[0] for x in xs]}")
        out_names = body.outputs[n_state:]
        scans: list[list] = [[] for _ in out_names]
        for t in range(length):
            feeds = dict(zip(body.inputs[:n_state], state))
            for name, x, direction in zip(body.inputs[n_state:], xs, in_dirs):
                feeds[name] = np.array(x[length - 1 - t if direction else t], order="C")
            outs = run_body(body, env, feeds)
            state = outs[:n_state]
            for scan, value, name in zip(scans, outs[n_state:], out_names):
                scan.append(np.asarray(host(value, name)))
        out_axes = self.view.attr("scan_output_axes") or [0] * len(out_names)
        out_dirs = self.view.attr("scan_output_directions") or [0] * len(out_names)
        results = []
        for scan, name, axis, direction in zip(scans, out_names, out_axes, out_dirs):
            stacked = np.stack(scan[::-1] if direction else scan) if scan else _empty(body.lowered, name)
            results.append(np.moveaxis(stacked, 0, axis % stacked.ndim))
        return state + results


def _truth(value) -> bool:
    return bool(np.asarray(value).reshape(-1)[0])


def _empty(lowered: Lowered, name: str) -> np.ndarray:
    """A scan output of no iterations: its element shape is unknown, so (0,)."""
    return np.zeros((0,), dtype=lowered.dtypes.get(name) or "float32")
