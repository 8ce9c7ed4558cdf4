"""A tenant's staging folders: the only files of the pool its sandboxed job worker sees.

    ROOT/tenant-T/in/executables/SHA256.hamr      the tenant's executables (read-only to its worker)
    ROOT/tenant-T/in/job-J-attempt-A/[shard-K/]    a run's inputs (read-only to its worker)
    ROOT/tenant-T/out/job-J-attempt-A/[shard-K/]   a run's outputs, in attempt-A (the worker writes them)
    ROOT/tenant-T/cache, ROOT/tenant-T/tmp         its build caches ($HAMR_CACHE_DIR, PoCL's) and temp files

Blobs are hard-linked in (copied where the store is on another file system), so staging costs no
copy; the worker can read the link but not write, truncate, rename or remove it. Each tenant has its
own build cache, so no tenant's worker can plant a shared object that another tenant's worker loads.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path


class Staging:
    def __init__(self, root: str | Path, tenant: int | str):
        self.dir = Path(root) / f"tenant-{tenant}"
        self.inbox, self.outbox = self.dir / "in", self.dir / "out"
        self.cache, self.tmp = self.dir / "cache", self.dir / "tmp"
        for folder in (self.inbox / "executables", self.outbox, self.cache, self.tmp):
            folder.mkdir(parents=True, exist_ok=True)
        # hwloc (in PoCL) opens "/" to read /sys and /proc through it, and a sandbox cannot allow
        # reading "/" alone: it reads them through this root of two links instead ($HWLOC_FSROOT)
        self.hwloc_root = self.cache / "hwloc-root"
        for name in ("sys", "proc"):
            if not (self.hwloc_root / name).is_symlink():
                self.hwloc_root.mkdir(exist_ok=True)
                (self.hwloc_root / name).symlink_to(f"/{name}")

    @classmethod
    def at(cls, tenant_dir: str | Path) -> Staging:
        tenant_dir = Path(tenant_dir)
        return cls(tenant_dir.parent, tenant_dir.name.removeprefix("tenant-"))

    def env(self) -> dict[str, str]:
        """The environment of the tenant's worker: caches and temp files in its own folders."""
        return {
            "HAMR_CACHE_DIR": str(self.cache),
            "POCL_CACHE_DIR": str(self.cache / "pocl"),
            "XDG_CACHE_HOME": str(self.cache),
            "TMPDIR": str(self.tmp),
            "PYTHONDONTWRITEBYTECODE": "1",
            "HWLOC_FSROOT": str(self.hwloc_root),
        }

    def executable(self, blob: Path, sha256: str) -> Path:
        """The tenant's link to an executable blob; one stable path per executable (the worker keeps its Session)."""
        return link(blob, self.inbox / "executables" / f"{sha256}.hamr")

    def run_inputs(self, job: int, attempt: int, shard: int | None = None) -> Path:
        folder = self.inbox / f"job-{job}-attempt-{attempt}"
        return folder / f"shard-{shard}" if shard is not None else folder

    def run_outputs(self, job: int, attempt: int, shard: int | None = None) -> Path:
        """The folder the worker writes `attempt-A` into (as hamr/pool/nodes/local/worker.py does)."""
        folder = self.outbox / f"job-{job}-attempt-{attempt}"
        return folder / f"shard-{shard}" if shard is not None else folder

    def inputs(self, job: int, attempt: int, blobs: dict[str, Path]) -> dict[str, str]:
        """A run's input blobs, linked into its inputs folder; name -> path."""
        folder = self.run_inputs(job, attempt)
        folder.mkdir(parents=True, exist_ok=True)
        return {
            name: str(link(blob, folder / f"input-{i}.npy")) for i, (name, blob) in enumerate(sorted(blobs.items()))
        }

    def drop_run(self, job: int, attempt: int, shard: int | None = None) -> None:
        """Remove a run's files: one shard's, or (shard None) the whole attempt's, every shard included."""
        for folder in (self.run_inputs(job, attempt, shard), self.run_outputs(job, attempt, shard)):
            shutil.rmtree(folder, ignore_errors=True)
            if shard is not None:
                try:
                    folder.parent.rmdir()  # the attempt's folder, once its last shard is gone
                except OSError:
                    pass


def link(source: Path, target: Path) -> Path:
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".partial-{os.getpid()}-{target.name}")
    partial.unlink(missing_ok=True)
    try:
        os.link(source, partial)
    except OSError:  # another file system, or links not allowed: copy
        shutil.copyfile(source, partial)
    os.replace(partial, target)
    return target


__all__ = ["Staging", "link"]
