"""Reading --input files and writing outputs the way `hamr run` promises."""

from __future__ import annotations

import numpy as np

from hamr.errors import InputError
from hamr.runtime.npy_io import output_file_name, read_inputs, write_outputs

__all__ = ["output_file_name", "parse_inputs", "write_outputs"]


def parse_inputs(specs: list[str]) -> dict[str, np.ndarray]:
    files = {}
    for spec in specs:
        name, sep, path = spec.partition("=")
        if not sep or not name or not path:
            raise InputError(f"--input expects NAME=FILE.npy, got '{spec}'")
        files[name] = path
    return read_inputs(files)
