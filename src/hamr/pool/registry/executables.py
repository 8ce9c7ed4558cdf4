"""Executables: uploaded .hamr bytes, verified before anything is stored, content-addressed by sha256."""

from __future__ import annotations

import hashlib
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from hamr.format.executable import load as load_executable
from hamr.pool.registry import accounting
from hamr.pool.registry.errors import NotFound
from hamr.pool.registry.models import ExecutableRecord, Tenant
from hamr.pool.registry.scope import Scope, require_tenant, scoped


class Executables:
    def upload_executable(self, tenant: int, data: bytes, name: str | None = None) -> ExecutableRecord:
        """Verify `data` as a .hamr file (FormatError if it is not one), store it, record it.

        The same bytes uploaded again by the same tenant return the existing record.
        """
        owner = require_tenant(tenant)
        data = bytes(data)
        executable = load_executable(data)  # raises FormatError before anything is stored
        digest = hashlib.sha256(data).hexdigest()
        with self.reading() as session:
            row = session.get(Tenant, owner)
            if row is None:
                raise NotFound(f"tenant {owner} not found")
            existing = self._executable_by_digest(owner, digest)
            if existing is not None:
                return existing
            accounting.check_storage(session, row, len(data))  # before the blob is written
        self.blobs.put(data)
        record = ExecutableRecord(
            tenant_id=owner,
            sha256=digest,
            name=(name or executable.name)[:255],
            targets=list(executable.targets),
            size=len(data),
            path=self.blobs.relative_path(digest),
        )
        try:
            with self.writing() as session:
                accounting.check_storage(session, session.get(Tenant, owner, with_for_update=True), len(data))
                session.add(record)
                session.flush()
                self._event(session, "executable.uploaded", f"executable:{record.id}", owner, sha256=digest, size=len(data))
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
        stmt = scoped(select(ExecutableRecord), ExecutableRecord.tenant_id, tenant).where(ExecutableRecord.id == executable_id)
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
