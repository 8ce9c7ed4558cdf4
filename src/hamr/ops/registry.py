"""The registry of custom ops: ``hamr.ops`` entry points, loaded lazily, plus programmatic registrations.

An entry point of group ``hamr.ops`` may resolve to a :class:`CustomOp`, a list (or tuple)
of them, or a zero-argument callable returning either. Entry points are read the first time
hamr looks up an op of a non-standard domain, so models that use only onnx's own domains
never import a plugin. A plugin that fails to load raises one :class:`CustomOpError` line
naming the entry point, every time ops are looked up, until :func:`reload`.

A programmatic :func:`register` takes precedence over a plugin's op of the same
(domain, name); two plugins that define the same op are an error.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import threading
from collections.abc import Iterable

from hamr.errors import CustomOpError, UnsupportedOpError, first_line
from hamr.ops.definition import STANDARD_DOMAINS, CustomOp
from hamr.plugins import entry_point_label

ENTRY_POINT_GROUP = "hamr.ops"

Key = tuple[str, str]

_lock = threading.RLock()
_explicit: dict[Key, CustomOp] = {}
_plugins: dict[Key, tuple[CustomOp, str]] | None = None  # None: entry points not read yet
_plugin_error: str | None = None


def _resolve(ep: importlib.metadata.EntryPoint) -> list[CustomOp]:
    where = f"custom op entry point {entry_point_label(ep)} of group '{ENTRY_POINT_GROUP}'"
    try:
        obj = ep.load()
        if callable(obj):  # a factory: CustomOp instances and lists are not callable
            obj = obj()
    except Exception as exc:
        raise CustomOpError(f"{where} failed to load: {first_line(exc)}") from exc
    if isinstance(obj, CustomOp):
        return [obj]
    if isinstance(obj, (list, tuple)) and obj and all(isinstance(o, CustomOp) for o in obj):
        return list(obj)
    raise CustomOpError(
        f"{where} gave {type(obj).__name__}; expected a CustomOp, a list of them, or a callable returning either"
    )


def _scan() -> dict[Key, tuple[CustomOp, str]]:
    found: dict[Key, tuple[CustomOp, str]] = {}
    seen: set[tuple[str, str]] = set()
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        if (ep.name, ep.value) in seen:  # the same distribution on sys.path twice
            continue
        seen.add((ep.name, ep.value))
        for op in _resolve(ep):
            other = found.get(op.key)
            if other is not None and other[0] is not op:
                raise CustomOpError(
                    f"custom op {op.label} is defined by two entry points: {other[1]} and {entry_point_label(ep)}"
                )
            found[op.key] = (op, entry_point_label(ep))
    return found


def _ensure_loaded() -> dict[Key, tuple[CustomOp, str]]:
    global _plugins, _plugin_error
    with _lock:
        if _plugins is None:
            _plugins = {}  # a plugin that looks ops up while it imports sees none of the plugins yet
            try:
                _plugins = _scan()
            except CustomOpError as exc:
                _plugins, _plugin_error = {}, str(exc)
        if _plugin_error is not None:
            raise CustomOpError(_plugin_error)
        return _plugins


def register(op: CustomOp, *, replace: bool = False) -> CustomOp:
    """Register `op` in this process; returns it. Another op already registered under its name needs `replace`."""
    if not isinstance(op, CustomOp):
        raise CustomOpError(f"register() takes a CustomOp, not {type(op).__name__}")
    with _lock:
        current = _explicit.get(op.key)
        if current is not None and current is not op and not replace:
            raise CustomOpError(f"custom op {op.label} is already registered (pass replace=True to replace it)")
        _explicit[op.key] = op
    return op


def unregister(domain: str, name: str) -> None:
    """Drop a programmatic registration (a plugin's op of that name shows again)."""
    with _lock:
        _explicit.pop((domain, name), None)


def lookup(domain: str, name: str) -> CustomOp | None:
    """The custom op registered for (domain, name), or None. Never reads plugins for onnx's own domains."""
    if domain in STANDARD_DOMAINS:
        return None
    with _lock:
        op = _explicit.get((domain, name))
        if op is not None:
            return op
        entry = _ensure_loaded().get((domain, name))
        return entry[0] if entry is not None else None


def registered() -> dict[Key, CustomOp]:
    """Every custom op known in this process, by (domain, name)."""
    with _lock:
        ops = {key: op for key, (op, _) in _ensure_loaded().items()}
        ops.update(_explicit)
    return dict(sorted(ops.items()))


def reload() -> dict[Key, CustomOp]:
    """Read the entry points again (after installing a plugin or changing sys.path) and return registered()."""
    global _plugins, _plugin_error
    importlib.invalidate_caches()
    with _lock:
        _plugins, _plugin_error = None, None
        return registered()


def missing_custom_ops(nodes: Iterable, functions: Iterable = ()) -> list[str]:
    """Labels of nodes (onnx-ir) in a non-standard domain that neither a custom op nor a model function defines."""
    local = {(f[0], f[1]) for f in functions}
    missing = set()
    for node in nodes:
        if node.domain in STANDARD_DOMAINS or (node.domain, node.op_type) in local:
            continue
        if lookup(node.domain, node.op_type) is None:
            missing.add(f"{node.domain}::{node.op_type}")
    return sorted(missing)


def require_registered(model) -> None:
    """Refuse to load an executable whose custom ops are not registered in this process."""
    import onnx_ir as ir

    missing = missing_custom_ops(ir.traversal.RecursiveGraphIterator(model.graph), model.functions)
    if missing:
        raise UnsupportedOpError(
            f"the model uses custom op(s) not registered here: {', '.join(missing)}; install the package that "
            f"provides them (entry point group '{ENTRY_POINT_GROUP}') or call hamr.ops.register()",
            missing,
        )
