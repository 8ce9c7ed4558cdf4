"""What the drivers share: the host's identity, stable ids, PCI addresses, vendor-library
imports and sessions (`LibraryDriver`), and the health rule (`Probe`).

The health rule (docs/pool.md, "Health"): a query the report needs (memory, architecture)
that fails, or hardware that says it cannot be trusted, makes a device `unhealthy`; a
repair waiting for a reset, or an optional query that fails, makes it `degraded`; a query
the library answers "not supported" never counts.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import io
import logging
import socket
import uuid
from collections.abc import Callable

from hamr.errors import first_line
from hamr.pool.drivers.base import DEGRADED, HEALTHY, UNHEALTHY, DeviceReport

log = logging.getLogger(__name__)

MACHINE_ID_FILES = ("/etc/machine-id", "/var/lib/dbus/machine-id")


def host_id() -> str:
    """This host's stable identity: $HAMR_HOST_ID, else the systemd machine id, else the host name."""
    from hamr.settings import settings

    explicit = (settings().host_id or "").strip()
    if explicit:
        return explicit
    for path in MACHINE_ID_FILES:
        try:
            with open(path) as f:
                text = f.read().strip()
        except OSError:
            continue
        if text:
            return text
    return socket.gethostname()


def import_library(name: str, install: str, native: str = "", quiet: bool = False):
    """(module, "") or (None, why not) for a vendor library that may be absent, or present without its native part.

    `quiet` swallows what the import prints (amdsmi prints when libamd_smi.so is missing).
    """
    try:
        with contextlib.redirect_stdout(io.StringIO()) if quiet else contextlib.nullcontext():
            return importlib.import_module(name), ""
    except ImportError as exc:
        if exc.name == name:
            return None, f"{name} is not installed ({install})"
        why = first_line(exc)
    except Exception as exc:  # e.g. amdsmi's KeyError: 'libamd_smi.so'
        why = first_line(exc)
    return None, f"{name} does not import: {why}" + (f" ({native})" if native else "")


@contextlib.contextmanager
def opened(init: Callable[[], object], shutdown: Callable[[], object]):
    """A vendor library's session: init(), the body, then shutdown() (a failed shutdown loses nothing)."""
    init()
    try:
        yield
    finally:
        try:
            shutdown()
        except Exception:
            pass


def hashed_id(prefix: str, *parts: str) -> str:
    """`prefix-` and a UUID-shaped sha256 of the parts: stable for as long as the parts are."""
    digest = hashlib.sha256("\0".join(parts).encode()).hexdigest()
    return f"{prefix}-{uuid.UUID(hex=digest[:32])}"


def text(value) -> str:
    """A library's string answer, bytes or str, without padding."""
    if isinstance(value, bytes):
        value = value.decode(errors="replace")
    return str(value).strip().rstrip("\0")


def pci_address(bus_id) -> str | None:
    """A PCI address as `dddd:bb:dd.f` in lower case (NVML writes an 8-digit domain), or None."""
    try:
        domain, bus, rest = text(bus_id).split(":")
        device, function = rest.split(".")
        return f"{int(domain, 16):04x}:{int(bus, 16):02x}:{int(device, 16):02x}.{int(function, 16):x}"
    except (ValueError, TypeError):
        return None


class Probe:
    """One device's queries through a vendor library; what fails decides the device's health."""

    def __init__(
        self,
        error: type[BaseException],
        unsupported: Callable[[BaseException], bool],
        describe: Callable[[BaseException], str] = str,
    ):
        self.error, self.unsupported, self.describe = error, unsupported, describe
        self.unhealthy: list[str] = []
        self.degraded: list[str] = []

    def _failed(self, fn, exc: BaseException) -> str:
        return f"{getattr(fn, '__name__', fn)}: {self.describe(exc)}"

    def need(self, fn, *args):
        """A query the report needs: any failure makes the device unhealthy (and gives None)."""
        try:
            return fn(*args)
        except self.error as exc:
            self.unhealthy.append(self._failed(fn, exc))
            return None

    def ask(self, fn, *args):
        """An optional query: "not supported" gives None; another failure makes the device degraded."""
        try:
            return fn(*args)
        except self.error as exc:
            if not self.unsupported(exc):
                self.degraded.append(self._failed(fn, exc))
            return None

    @property
    def health(self) -> str:
        return UNHEALTHY if self.unhealthy else DEGRADED if self.degraded else HEALTHY

    @property
    def reasons(self) -> list[str]:
        return self.unhealthy + self.degraded


class LibraryDriver:
    """A driver over a vendor library opened for each look (NVML, AMD SMI); a subclass says how.

    `present()` and `discover()` turn the library's errors into the reason, or into a warning
    and no devices: neither raises.
    """

    name = ""
    label = ""  # how a reason names the library: "NVML", "amdsmi"
    nothing = ""  # the reason when the library sees no device

    def library(self):
        """(module, "") or (None, why not)."""
        raise NotImplementedError

    def session(self, lib):
        """A context manager: the library opened, then closed."""
        raise NotImplementedError

    def error(self, lib) -> type[BaseException]:
        raise NotImplementedError

    def count(self, lib) -> int:
        raise NotImplementedError

    def reports(self, lib) -> list[DeviceReport | None]:
        """One report a device (None for a device skipped), inside a session."""
        raise NotImplementedError

    def describe(self, lib, exc: BaseException) -> str:
        """One line: the library's own text for its errors, `Type: text` for any other."""
        return str(exc) if isinstance(exc, self.error(lib)) else first_line(exc)

    def present(self) -> tuple[bool, str]:
        lib, why = self.library()
        if lib is None:
            return False, why
        try:
            with self.session(lib):
                count = self.count(lib)
        except Exception as exc:  # no kernel driver, no permission, a library that does not load
            return False, f"{self.label}: {self.describe(lib, exc)}"
        return (True, "") if count else (False, f"{self.label}: {self.nothing}")

    def discover(self) -> list[DeviceReport]:
        lib, _ = self.library()
        if lib is None:
            return []
        try:
            with self.session(lib):
                found = self.reports(lib)
        except self.error(lib) as exc:
            log.warning("%s: %s failed during discovery: %s", self.name, self.label, self.describe(lib, exc))
            return []
        return [r for r in found if r is not None]
