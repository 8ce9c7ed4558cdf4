"""The targets this installation of hamr knows, by name: the ``hamr.targets`` entry points.

Each entry point resolves to a :class:`~hamr.targets.base.Target` class (or a zero-argument
callable returning a target); it is loaded the first time its target is asked for. Names and
their order come from `hamr.plugins` (by name, the reference target last).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping

from hamr.errors import HamrError, first_line
from hamr.plugins import TARGETS_GROUP, entry_point_label, target_entry_points, target_names
from hamr.targets.base import Target

_lock = threading.Lock()
_loaded: dict[str, Target] = {}


def _load(name: str) -> Target:
    with _lock:
        target = _loaded.get(name)
        if target is None:
            ep = target_entry_points()[name]
            try:
                obj = ep.load()
                target = obj() if callable(obj) else obj
            except Exception as exc:
                raise HamrError(
                    f"target entry point {entry_point_label(ep)} of group '{TARGETS_GROUP}' "
                    f"failed to load: {first_line(exc)}"
                ) from exc
            _loaded[name] = target
        return target


class _Targets(Mapping):
    """name -> target, loaded on first access."""

    def __getitem__(self, name: str) -> Target:
        if name not in target_entry_points():
            raise KeyError(name)
        return _load(name)

    def __iter__(self) -> Iterator[str]:
        return iter(target_names())

    def __len__(self) -> int:
        return len(target_names())


TARGETS: Mapping[str, Target] = _Targets()


def get_target(name: str) -> Target:
    try:
        return TARGETS[name]
    except KeyError:
        raise HamrError(f"unknown target '{name}'; known targets: {', '.join(sorted(TARGETS))}") from None


def targets_for(kind: str) -> tuple[str, ...]:
    """The targets whose variants run on devices of this kind ("cpu", "opencl"), in preference order."""
    return tuple(name for name in target_names() if kind in TARGETS[name].devices)
