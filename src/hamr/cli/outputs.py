"""Reading --input files and writing outputs the way `hamr run` promises."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np

from hamr.errors import InputError

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


def output_file_name(name: str) -> str:
    return _UNSAFE.sub("_", name) + ".npy"


def parse_inputs(specs: list[str]) -> dict[str, np.ndarray]:
    feeds = {}
    for spec in specs:
        name, sep, path = spec.partition("=")
        if not sep or not name or not path:
            raise InputError(f"--input expects NAME=FILE.npy, got '{spec}'")
        file = Path(path)
        if not file.is_file():
            raise InputError(f"input file not found for '{name}': {file}")
        try:
            feeds[name] = np.load(file, allow_pickle=False)
        except (ValueError, OSError, EOFError) as exc:
            raise InputError(f"input file for '{name}' is not a readable .npy file: {file} ({exc})") from exc
    return feeds


def write_outputs(outputs: dict, directory: Path) -> dict[str, str]:
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
