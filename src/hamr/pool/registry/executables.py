"""Executables: uploaded .hamr bytes, verified before anything is stored, content-addressed by sha256."""

from __future__ import annotations

import hashlib
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from hamr.format.executable import load as load_executable
from hamr.pool.registry import accounting
from hamr.pool.registry.blobs import StagedBlob
from hamr.pool.registry.errors import NotFound
from hamr.pool.registry.models import ExecutableRecord, Tenant
from hamr.pool.registry.scope import Scope, require_tenant, scoped


class Executables:
    def upload_executable(self, tenant: int, data: bytes | StagedBlob, name: str | None = None) -> ExecutableRecord:
        """Verify `data` as a .hamr file (FormatError if it is not one), store it, record it.

        `data`: the bytes, or an upload staged in the blob store (verified memory-mapped from its
        file, then committed; the caller discards it when this raises). The same bytes uploaded
        again by the same tenant return the existing record.
        """
        owner = require_tenant(tenant)
        if isinstance(data, StagedBlob):
            digest, size = data.close(), data.size
            executable = load_executable(data.path)  # raises FormatError before anything is stored
        else:
            data = bytes(data)
            digest, size = hashlib.sha256(data).hexdigest(), len(data)
            executable = load_executable(data)
        name, targets = (name or executable.name)[:255], list(executable.targets)
        del executable  # its weights map the file: let it go before the file moves
        with self.reading() as session:
            row = session.get(Tenant, owner)
            if row is None:
                raise NotFound(f"tenant {owner} not found")
            existing = self._executable_by_digest(owner, digest)
            if existing is not None:
                return existing
            accounting.check_storage(session, row, size)  # before the blob is written
        if isinstance(data, StagedBlob):
            data.commit()
        else:
            self.blobs.put(data)
        record = ExecutableRecord(
            tenant_id=owner,
            sha256=digest,
            name=name,
            targets=targets,
            size=size,
            path=self.blobs.relative_path(digest),
        )
        try:
            with self.writing() as session:
                accounting.check_storage(session, session.get(Tenant, owner, with_for_update=True), size)
                session.add(record)
                session.flush()
                self._event(session, "executable.uploaded", f"executable:{record.id}", owner, sha256=digest, size=size)
        except IntegrityError:  # the same tenant uploaded the same bytes concurrently
            existing = self._executable_by_digest(owner, digest)
            if existing is None:
                raise
            return existing
        return record

    def _executable_by_digest(self, owner: int, digest: str) -> ExecutableRecord | None:
        stmt = select(ExecutableRecord).where(ExecutableRecord.tenant_id == owner, ExecutableRecord.sha256 == digest)
        return self._one(stmt)

    def get_executable(self, tenant: Scope, executable_id: int) -> ExecutableRecord | None:
        stmt = scoped(select(ExecutableRecord), ExecutableRecord.tenant_id, tenant).where(
            ExecutableRecord.id == executable_id
        )
        return self._one(stmt)

    def list_executables(self, tenant: Scope) -> list[ExecutableRecord]:
        stmt = scoped(select(ExecutableRecord), ExecutableRecord.tenant_id, tenant).order_by(ExecutableRecord.id)
        return self._all(stmt)

    def _require_executable(self, tenant: Scope, executable_id: int) -> ExecutableRecord:
        record = self.get_executable(tenant, executable_id)
        if record is None:
            raise NotFound(f"executable {executable_id} not found")
        return record

    def executable_file(self, tenant: Scope, executable_id: int) -> Path:
        """The stored .hamr file, e.g. for `hamr.load(path)` (memory-mapped, hashes checked there)."""
        return self.blobs.root / self._require_executable(tenant, executable_id).path

    def read_executable(self, tenant: Scope, executable_id: int) -> bytes:
        """The uploaded bytes, checked against their sha256."""
        return self.blobs.get(self._require_executable(tenant, executable_id).sha256)

    def executable_chunks(self, tenant: Scope, executable_id: int):
        """The uploaded file's size and bytes piece by piece (BlobStore.read_chunks)."""
        return self.blobs.read_chunks(self._require_executable(tenant, executable_id).sha256)
