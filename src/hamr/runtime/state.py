"""Carried state: outputs fed back as inputs on the next call (recurrent state, KV caches, running statistics)."""

from __future__ import annotations

from typing import Any

import numpy as np

from hamr.errors import InputError
from hamr.ir.signature import Signature
from hamr.runtime.feeds import dim_sizes


def check_state_map(signature: Signature, state: dict[str, str] | None) -> dict[str, str]:
    """`{output: input}` pairs, each naming a tensor output and a tensor input of the same dtype."""
    state = dict(state or {})
    inputs = {s.name: s for s in signature.inputs}
    outputs = {s.name: s for s in signature.outputs}
    for output, input_ in state.items():
        if output not in outputs:
            raise InputError(f"state: '{output}' is not an output of the model (outputs: {', '.join(outputs)})")
        if input_ not in inputs:
            raise InputError(f"state: '{input_}' is not an input of the model (inputs: {', '.join(inputs)})")
        o, i = outputs[output], inputs[input_]
        if o.kind != "tensor" or i.kind != "tensor":
            raise InputError(f"state: '{output}' -> '{input_}' must join two tensors")
        if o.dtype and i.dtype and o.dtype != i.dtype:
            raise InputError(f"state: output '{output}' is {o.dtype} but input '{input_}' is {i.dtype}")
    if len(set(state.values())) != len(state):
        raise InputError("state: two outputs feed the same input")
    return state


def initial_value(signature: Signature, name: str, feeds: dict[str, Any]) -> np.ndarray:
    """Zeros for a state input not carried yet: fixed dims as declared, symbolic dims as the other
    feeds bind them, unbound ones 0 (an empty KV cache)."""
    spec = next(s for s in signature.inputs if s.name == name)
    if spec.shape is None:
        raise InputError(f"state input '{name}' has no known rank; pass its first value in the feeds")
    sizes = dim_sizes(signature, feeds)
    shape = [d if isinstance(d, int) else sizes.get(d or "", 0) for d in spec.shape]
    return np.zeros(shape, dtype=np.dtype(spec.dtype or "float32"))
