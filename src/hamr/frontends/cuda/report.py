"""What the converter did with each construct of a .cu file, and the share it converted automatically."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

CONVERTED, REFUSED, SKIPPED = "converted", "refused", "skipped"


@dataclass(frozen=True)
class Construct:
    file: str
    line: int
    construct: str
    status: str  # converted | refused | skipped
    detail: str = ""

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.construct}: {self.status}" + (
            f" ({self.detail})" if self.detail else ""
        )


@dataclass
class Rate:
    """SYCLomatic-style: lines of device code migrated automatically / all device-code lines; kernels likewise."""

    kernel_lines: int = 0
    lines_converted: int = 0
    kernels: int = 0
    kernels_converted: int = 0

    @property
    def lines(self) -> float:
        return self.lines_converted / self.kernel_lines if self.kernel_lines else 0.0

    def to_dict(self) -> dict:
        return {
            "kernel_lines": self.kernel_lines,
            "lines_converted": self.lines_converted,
            "lines_rate": round(self.lines, 4),
            "kernels": self.kernels,
            "kernels_converted": self.kernels_converted,
        }

    def __str__(self) -> str:
        return (
            f"{self.lines:.0%} of device-code lines converted automatically ({self.lines_converted}/{self.kernel_lines}),"
            f" {self.kernels_converted}/{self.kernels} kernels"
        )


@dataclass
class Report:
    constructs: list[Construct] = field(default_factory=list)
    rate: Rate = field(default_factory=Rate)

    def add(self, file: str, line: int, construct: str, status: str, detail: str = "") -> None:
        c = Construct(file, line, construct, status, detail)
        if c not in self.constructs:
            self.constructs.append(c)

    @property
    def refused(self) -> list[Construct]:
        return [c for c in self.constructs if c.status == REFUSED]

    def to_dict(self) -> dict:
        ordered = sorted(self.constructs, key=lambda c: (c.line, c.construct))
        return {"rate": self.rate.to_dict(), "constructs": [asdict(c) for c in ordered]}
