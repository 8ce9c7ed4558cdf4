"""Reading --input files and writing outputs the way `hamr run` promises."""

from __future__ import annotations

import numpy as np

from hamr.errors import InputError
from hamr.runtime.npy_io import output_file_name, read_inputs, write_outputs

__all__ = ["output_file_name", "parse_inputs", "report_outputs", "write_outputs"]


def parse_inputs(specs: list[str]) -> dict[str, np.ndarray]:
    files = {}
    for spec in specs:
        name, sep, path = spec.partition("=")
        if not sep or not name or not path:
            raise InputError(f"--input expects NAME=FILE.npy, got '{spec}'")
        files[name] = path
    return read_inputs(files)


def report_outputs(outputs: dict, output_dir, out, err, done: str) -> None:
    """The pool commands' ending: write the outputs to `output_dir` and say `done`, else list them."""
    if output_dir is not None:
        index = write_outputs(outputs, output_dir)
        err.print(f"{done}; wrote {len(index)} output(s) to {output_dir}")
        return
    for name, value in outputs.items():
        out.print(f"{name}: {value.dtype}{list(value.shape)}")
