"""I/O binding: inputs uploaded once and outputs left on the session's device across calls."""

from __future__ import annotations

from typing import Any

import numpy as np

from hamr.errors import InputError


class IOBinding:
    """Made by `Session.io_binding()`; moves with its session when the session migrates."""

    def __init__(self, session) -> None:
        self._session = session
        self._inputs: dict[str, Any] = {}  # name -> device value
        self._bound_outputs: list[str] = []
        self._results: dict[str, Any] = {}  # name -> device value of the last run

    def bind_input(self, name: str, value: Any) -> None:
        """Copy `value` to the device now; later runs read it there."""
        if name not in self._session.input_names:
            raise InputError(f"unknown input '{name}'; the model's inputs are: {', '.join(self._session.input_names)}")
        program = self._session.program
        self._inputs[name] = value if program.is_device_value(value) else program.to_device(np.asarray(value))

    def bind_output(self, name: str) -> None:
        """Leave output `name` on the device after each run (read it with `output` or `outputs`)."""
        if name not in self._session.output_names:
            raise InputError(
                f"unknown output '{name}'; the model's outputs are: {', '.join(self._session.output_names)}"
            )
        if name not in self._bound_outputs:
            self._bound_outputs.append(name)

    def clear(self) -> None:
        self._inputs.clear()
        self._bound_outputs.clear()
        self._results.clear()

    @property
    def inputs(self) -> dict[str, Any]:
        return dict(self._inputs)

    @property
    def bound_outputs(self) -> frozenset[str]:
        return frozenset(self._bound_outputs)

    def output(self, name: str) -> Any:
        """The device value of bound output `name` from the last run (pass it as a feed to stay on the device)."""
        try:
            return self._results[name]
        except KeyError:
            raise InputError(f"output '{name}' is not bound or has not been computed yet") from None

    def outputs(self) -> dict[str, np.ndarray]:
        """Host copies of the bound outputs of the last run."""
        program = self._session.program
        return {name: np.array(program.to_host(value)) for name, value in self._results.items()}

    def _store(self, results: dict[str, Any]) -> None:
        self._results = results

    def _move(self, old, new) -> int:
        moved = 0
        for table in (self._inputs, self._results):
            for name, value in table.items():
                host = np.asarray(old.to_host(value))
                table[name] = new.to_device(host)
                moved += host.nbytes
        return moved
