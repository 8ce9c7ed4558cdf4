"""A vendor's driver for hamr's tests: "ExampleChip" NPUs, as an Ascend or Cambricon package would add them.

The "hardware" is the environment: HAMR_TESTDRIVER_NPUS NPUs (default 2), each with
EXAMPLE_MEMORY bytes of which EXAMPLE_USED[i] are in use; 0 NPUs means not present.
`broken` (no such attribute), `notadriver` (not a driver) and `flaky` (discover raises)
are the plugins discovery must report and skip.
"""

from __future__ import annotations

import os

from hamr.pool.drivers import HEALTHY, DeviceReport

EXAMPLE_MEMORY = 32 * 2**30
EXAMPLE_USED = (0, 6 * 2**30, 2**30, 0)
EXAMPLE_CORES = 24


def npu_count() -> int:
    return int(os.environ.get("HAMR_TESTDRIVER_NPUS", "2"))


class ExampleNpuDriver:
    name = "npu"

    def present(self) -> tuple[bool, str]:
        if npu_count() <= 0:
            return False, "no ExampleChip NPU (HAMR_TESTDRIVER_NPUS=0)"
        return True, ""

    def discover(self) -> list[DeviceReport]:
        return [
            DeviceReport(
                uuid=f"EXC-{index:04d}-7a1f",
                driver=self.name,
                vendor="ExampleChip",
                kind="npu",
                architecture="exc-v2",
                memory_total=EXAMPLE_MEMORY,
                memory_free=EXAMPLE_MEMORY - EXAMPLE_USED[index % len(EXAMPLE_USED)],
                compute_units=EXAMPLE_CORES,
                health=HEALTHY,
                targets=("examplechip",),
                local_id=f"npu:{index}",
                details={"name": "ExampleChip X2", "health_reasons": []},
            )
            for index in range(npu_count())
        ]


class FlakyDriver:
    name = "flaky"

    def present(self) -> tuple[bool, str]:
        return True, ""

    def discover(self) -> list[DeviceReport]:
        raise RuntimeError("the flaky board stopped answering")


NOT_A_DRIVER = {"name": "notadriver"}
