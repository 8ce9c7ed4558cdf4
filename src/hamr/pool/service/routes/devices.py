"""/v1/devices: admins see every device and drain them; tenants see the schedulable ones, without node internals."""

from __future__ import annotations

from fastapi import APIRouter

from hamr.pool.service.auth import Admin, Authed, Reg
from hamr.pool.service.schemas import DeviceOut, PublicDevice, Uuid, device_out, public_device
from hamr.pool.service.strict_json import StrictJsonRoute
from hamr.pool.service.wake import WAKES_POOL

router = APIRouter(prefix="/v1/devices", tags=["devices"], route_class=StrictJsonRoute)


@router.get("", response_model=list[DeviceOut] | list[PublicDevice], summary="List devices")
def list_devices(registry: Reg, who: Authed):
    if not who.admin:
        return [public_device(d) for d in registry.list_devices(schedulable=True)]
    names = {n.id: n.name for n in registry.list_nodes()}
    return [device_out(d, names) for d in registry.list_devices()]


def _drain(registry, uuid: str, drained: bool) -> DeviceOut:
    device = registry.set_drained(uuid, drained)
    names = {n.id: n.name for n in registry.list_nodes()}
    return device_out(device, names)


@router.post(
    "/{uuid:path}/drain",
    response_model=DeviceOut,
    summary="Drain a device: it takes no new placements",
    dependencies=WAKES_POOL,
)
def drain(uuid: Uuid, registry: Reg, who: Admin) -> DeviceOut:
    return _drain(registry, uuid, True)


@router.post("/{uuid:path}/undrain", response_model=DeviceOut, summary="Undrain a device", dependencies=WAKES_POOL)
def undrain(uuid: Uuid, registry: Reg, who: Admin) -> DeviceOut:
    return _drain(registry, uuid, False)
