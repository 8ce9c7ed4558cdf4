"""Peak resident memory of one runtime opening a model and running it once, in a fresh process each.

The child reports its peak (VmHWM) less what it held after importing the runtime (for hamr: its modules and the
target's), so the figure is what the model costs: weights, packed copies, built code and the first run's buffers. Linux only (/proc/self/status)."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

_CHILD = r"""
import json, sys
import numpy as np

def resident(key):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024

runtime, model, feeds_path, names, setting = sys.argv[1], sys.argv[2], sys.argv[3], json.loads(sys.argv[4]), sys.argv[5]
with np.load(feeds_path, allow_pickle=False) as data:
    feeds = {name: data[f"arr_{i}"] for i, name in enumerate(names)}
if runtime == "hamr":
    import importlib
    import hamr.format.executable, hamr.runtime.session, hamr.settings, hamr.targets.native.program, onnx.reference
    importlib.import_module(f"hamr.targets.{setting.split(':')[0]}.target")  # code, not the model: before the base
    base = resident("VmRSS")
    hamr.runtime.session.Session(hamr.format.executable.load(model), device=setting).run(feeds)
else:
    import onnxruntime
    base = resident("VmRSS")
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = int(setting)
    onnxruntime.InferenceSession(model, options, providers=["CPUExecutionProvider"]).run(None, feeds)
print(resident("VmHWM") - base)
"""


def peak_bytes(runtime: str, model: Path, feeds: dict[str, np.ndarray], setting: str, timeout_s: float = 600) -> int:
    """Bytes `runtime` ("hamr": a .hamr file, `setting` the device; "onnxruntime": an .onnx file, `setting` the
    thread count) adds at its peak while it opens `model` and runs it once on `feeds`."""
    if not Path("/proc/self/status").exists():
        raise RuntimeError("peak memory is measured from /proc/self/status (Linux)")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "feeds.npz"
        np.savez(path, *feeds.values())
        command = [sys.executable, "-c", _CHILD, runtime, str(model), str(path), json.dumps(list(feeds)), setting]
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s)
    if done.returncode != 0:
        lines = (done.stderr or done.stdout).strip().splitlines() or [f"exit status {done.returncode}"]
        raise RuntimeError(f"{runtime}: {lines[-1]}")
    return int(done.stdout.strip().splitlines()[-1])
