"""Drivers from the `hamr.drivers` entry points, and discovery over all of them.

An entry point resolves to a `Driver` or to a zero-argument callable (a class, a factory)
that returns one. Nothing a plugin does can crash discovery: an entry point that does not
load or does not give a driver is *broken*, a driver whose `present()` or `discover()`
raises has *failed*; each is said in one line (logged as a warning, and in its
`DriverStatus`) and skipped, and the other drivers still report.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import logging
from dataclasses import asdict, dataclass, field, replace

from hamr.errors import first_line
from hamr.plugins import entry_point_label
from hamr.pool.drivers.base import DeviceReport, Driver

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "hamr.drivers"
PRESENT, ABSENT, BROKEN, FAILED = "present", "absent", "broken", "failed"


@dataclass(frozen=True)
class DriverStatus:
    name: str  # the driver's name (the entry point's, when it gave no driver)
    state: str  # present | absent | broken (the entry point gives no driver) | failed (present/discover raised)
    reason: str = ""  # one line: why absent, broken or failed
    devices: int = 0  # how many devices it reported
    source: str = ""  # the entry point: 'name = module:attr' (from dist version)

    def to_json(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Discovery:
    devices: list[DeviceReport] = field(default_factory=list)
    drivers: list[DriverStatus] = field(default_factory=list)

    def to_json(self) -> dict:
        return {"devices": [d.to_json() for d in self.devices], "drivers": [s.to_json() for s in self.drivers]}


def is_driver(obj) -> bool:
    """An object (not a class) with a non-empty `name` and callable `present` and `discover`."""
    return (
        not isinstance(obj, type)
        and isinstance(getattr(obj, "name", None), str)
        and bool(obj.name)
        and callable(getattr(obj, "present", None))
        and callable(getattr(obj, "discover", None))
    )


def _resolve(ep: importlib.metadata.EntryPoint) -> Driver:
    """The entry point's driver; raises ValueError with the one line that says why it gives none."""
    where = f"driver entry point {entry_point_label(ep)} of group '{ENTRY_POINT_GROUP}'"
    try:
        obj = ep.load()
        if not is_driver(obj) and callable(obj):  # a class or a factory
            obj = obj()
    except Exception as exc:
        raise ValueError(f"{where} failed to load: {first_line(exc)}") from exc
    if not is_driver(obj):
        raise ValueError(
            f"{where} gave {type(obj).__name__}; expected a Driver (name, present(), discover()) "
            "or a zero-argument callable returning one"
        )
    return obj


def _entry_points() -> list[importlib.metadata.EntryPoint]:
    importlib.invalidate_caches()  # a plugin installed since the last look
    return sorted(importlib.metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda e: (e.name, e.value))


def _load() -> tuple[list[tuple[Driver, str]], list[DriverStatus]]:
    """(driver, source) for each entry point that gives one, and the status of each that is broken."""
    loaded: list[tuple[Driver, str]] = []
    broken: list[DriverStatus] = []
    seen: set[tuple[str, str]] = set()
    names: dict[str, str] = {}
    for ep in _entry_points():
        if (ep.name, ep.value) in seen:  # the same distribution on sys.path twice
            continue
        seen.add((ep.name, ep.value))
        source = entry_point_label(ep)
        try:
            driver = _resolve(ep)
            if driver.name in names:
                raise ValueError(
                    f"driver entry point {source} gives driver '{driver.name}', "
                    f"which {names[driver.name]} already gives"
                )
        except ValueError as exc:
            log.warning("%s", exc)
            broken.append(DriverStatus(ep.name, BROKEN, str(exc), 0, source))
            continue
        names[driver.name] = source
        loaded.append((driver, source))
    return loaded, broken


def load_drivers() -> list[Driver]:
    """Every driver the `hamr.drivers` entry points give; a broken entry point is logged in one line and skipped."""
    return [driver for driver, _ in _load()[0]]


def _run(driver: Driver, source: str) -> tuple[list[DeviceReport], DriverStatus]:
    name = driver.name
    try:
        present, why = driver.present()
    except Exception as exc:
        return [], DriverStatus(name, FAILED, f"driver '{name}': present() raised {first_line(exc)}", 0, source)
    if not present:
        return [], DriverStatus(name, ABSENT, str(why) or "not present", 0, source)
    try:
        found = list(driver.discover())
    except Exception as exc:
        return [], DriverStatus(name, FAILED, f"driver '{name}': discover() raised {first_line(exc)}", 0, source)
    wrong = [r for r in found if not isinstance(r, DeviceReport)]
    if wrong:
        why = f"driver '{name}': discover() gave {type(wrong[0]).__name__}, not DeviceReport"
        return [], DriverStatus(name, FAILED, why, 0, source)
    return found, DriverStatus(name, PRESENT, "", len(found), source)


def discover(drivers: list[Driver] | None = None) -> Discovery:
    """Every device of every driver (the entry points' drivers by default), and each driver's status.

    Devices come in driver order. A device whose uuid an earlier driver already reported is
    skipped with a warning: a uuid names one device in the pool.
    """
    loaded, statuses = _load() if drivers is None else ([(d, "") for d in drivers], [])
    devices: list[DeviceReport] = []
    owners: dict[str, str] = {}
    for driver, source in loaded:
        found, status = _run(driver, source)
        if status.state == FAILED:
            log.warning("%s", status.reason)
        kept = 0
        for report in found:
            if report.uuid in owners:
                log.warning(
                    "driver '%s': device %s skipped: driver '%s' already reported uuid %s",
                    driver.name,
                    report.local_id,
                    owners[report.uuid],
                    report.uuid,
                )
                continue
            owners[report.uuid] = driver.name
            devices.append(report)
            kept += 1
        statuses.append(replace(status, devices=kept))
    return Discovery(devices, sorted(statuses, key=lambda s: s.name))


def discover_all(drivers: list[Driver] | None = None) -> list[DeviceReport]:
    """Every device of every driver; `discover()` also says which drivers are present and why not."""
    return discover(drivers).devices
