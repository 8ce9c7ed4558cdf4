"""Session: an executable loaded onto one device, ready to run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hamr.format.executable import Executable, load
from hamr.runtime.devices import select_device
from hamr.runtime.feeds import validate_feeds
from hamr.targets import get_target


class Session:
    def __init__(self, executable: Executable | str | Path, device: str = "auto"):
        self.executable = executable if isinstance(executable, Executable) else load(executable)
        self.device, self.target = select_device(device, self.executable.targets)
        variant = self.executable.variants[self.target]
        self.program = get_target(self.target).load(self.executable.model, variant, self.device.id)

    @property
    def signature(self):
        return self.executable.signature

    def run(self, feeds: dict[str, Any]) -> dict[str, Any]:
        checked = validate_feeds(self.signature, feeds)
        outputs = self.program.run(checked)
        return dict(zip((s.name for s in self.signature.outputs), outputs))
