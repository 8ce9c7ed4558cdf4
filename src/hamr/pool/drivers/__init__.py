"""Device drivers: one plugin per kind of hardware, registered by entry point (`hamr.drivers`).

hamr's own: `cpu`, `opencl`, `nvidia` (NVML) and `amd` (AMD SMI). docs/pool.md ("Drivers")
is the interface for vendors.
"""

from hamr.pool.drivers.base import DEGRADED, HEALTHY, UNHEALTHY, DeviceReport, Driver
from hamr.pool.drivers.loader import (
    ENTRY_POINT_GROUP,
    Discovery,
    DriverStatus,
    discover,
    discover_all,
    is_driver,
    load_drivers,
)

__all__ = [
    "DEGRADED",
    "ENTRY_POINT_GROUP",
    "HEALTHY",
    "UNHEALTHY",
    "DeviceReport",
    "Discovery",
    "Driver",
    "DriverStatus",
    "discover",
    "discover_all",
    "is_driver",
    "load_drivers",
]
