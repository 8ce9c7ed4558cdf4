"""Tensors in and out as .npy files (never pickled): what `hamr run` and the pool's workers exchange."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np

from hamr.errors import InputError

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")
_NPY_MAGIC = b"\x93NUMPY"


def output_file_name(name: str) -> str:
    return _UNSAFE.sub("_", name) + ".npy"


def read_inputs(files: dict[str, str | Path]) -> dict[str, np.ndarray]:
    feeds = {}
    for name, path in files.items():
        file = Path(path)
        if not file.is_file():
            raise InputError(f"input file not found for '{name}': {file}")
        try:
            feeds[name] = np.load(file, allow_pickle=False)
        except (ValueError, OSError, EOFError) as exc:
            raise InputError(
                f"input file for '{name}' is not a readable .npy file: {file} ({_why(file, exc)})"
            ) from exc
    return feeds


def _why(file: Path, exc: Exception) -> str:
    """Why np.load refused the file. NumPy reads a file without the .npy magic as a pickle, and so calls
    any such file "pickled (object) data": say what it is instead."""
    try:
        with open(file, "rb") as f:
            magic = f.read(len(_NPY_MAGIC))
    except OSError:
        return str(exc)
    return str(exc) if magic == _NPY_MAGIC else "it does not start with the .npy magic \\x93NUMPY"


def write_outputs(outputs: dict, directory: Path) -> dict[str, str]:
    """One .npy per output, names made file-safe, and outputs.json mapping output names to files."""
    directory.mkdir(parents=True, exist_ok=True)
    index = {}
    used: set[str] = set()
    for name, value in outputs.items():
        file = output_file_name(name)
        stem = file[:-4]
        suffix = 1
        while file in used:  # two names that sanitise alike
            file = f"{stem}_{suffix}.npy"
            suffix += 1
        used.add(file)
        np.save(directory / file, np.asarray(value), allow_pickle=False)
        index[name] = file
    (directory / "outputs.json").write_text(json.dumps(index, indent=2) + "\n")
    return index


def read_outputs(directory: Path) -> dict[str, np.ndarray]:
    index = json.loads((Path(directory) / "outputs.json").read_text())
    return {name: np.load(Path(directory) / file, allow_pickle=False) for name, file in index.items()}
