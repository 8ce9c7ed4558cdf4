"""PoCL built on an LLVM that does not know the host CPU cannot compile any kernel.

The PyPI PoCL (3.0-rc2, LLVM 14) asks LLVM for the host CPU name. On CPUs newer than
LLVM 14 (this project's Zen 5 machines, for one) the answer is "generic", which clang
then rejects: "unknown target CPU 'generic'" (pocl/pocl#1049). The device's HSTR ends in
"-generic" in that case. We point the device's LLVM CPU name at a portable ISA level
that LLVM 14 knows, found by scanning the device struct for pointers to "generic".
Only readable memory is inspected, and nothing is touched on any other driver.
"""

from __future__ import annotations

import ctypes
import logging

log = logging.getLogger(__name__)
CPU_NAME = ctypes.create_string_buffer(b"x86-64-v3")
_patched: set[int] = set()


def _readable() -> list[tuple[int, int]]:
    ranges = []
    with open("/proc/self/maps") as f:
        for line in f:
            addr, perms = line.split()[:2]
            if perms[0] == "r":
                lo, hi = (int(x, 16) for x in addr.split("-"))
                ranges.append((lo, hi))
    return ranges


def needs_workaround(device) -> bool:
    return "PoCL" in device.version and device.version.rstrip().endswith("-generic")


def apply(device) -> bool:
    """Make a PoCL CPU device with an unknown host CPU usable; True if patched."""
    if not needs_workaround(device) or device.int_ptr in _patched:
        return False
    ranges = _readable()

    def readable(address: int, size: int = 16) -> bool:
        return any(lo <= address and address + size <= hi for lo, hi in ranges)

    base = device.int_ptr
    found = 0
    for offset in range(0, 8192, 8):
        if not readable(base + offset, 8):
            break
        pointer = ctypes.c_uint64.from_address(base + offset).value
        if pointer and readable(pointer) and ctypes.string_at(pointer, 8) == b"generic\0":
            ctypes.c_uint64.from_address(base + offset).value = ctypes.addressof(CPU_NAME)
            found += 1
    _patched.add(device.int_ptr)
    if found:
        log.info("PoCL: LLVM does not know this CPU; compiling kernels for %s", CPU_NAME.value.decode())
    return bool(found)
