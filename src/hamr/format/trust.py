"""Whether a .hamr file's native code may reach a target: decided once per file, at load.

A variant's files are either source text that hamr regenerates from the graph itself (`.c`,
`.cl`: targets compile their own regenerated source, never the stored copy) or native code
(everything else: the cpu `.so` today; OpenCL binaries, cubin, hsaco later). Native code is
kept only when the manifest is signed by a key this process trusts, or when the caller opts in
for this file; otherwise it is dropped and the target builds from regenerated source. The
manifest's hashes alone prove integrity, not origin.
"""

from __future__ import annotations

from dataclasses import dataclass

from hamr.errors import FormatError
from hamr.format.container import Container
from hamr.format.signing import ALGORITHM, trusted_keys, verify

SOURCE_SUFFIXES = (".c", ".cl", ".cu", ".hip")


def is_native(file_name: str) -> bool:
    return not file_name.endswith(SOURCE_SUFFIXES)


@dataclass(frozen=True)
class Trust:
    signers: tuple[str, ...] = ()  # key ids the file's signatures name
    trusted_signer: str | None = None  # a trusted key whose signature verified
    opted_in: bool = False  # the caller trusted this file's binaries explicitly
    native: tuple[str, ...] = ()  # members holding native code

    @property
    def binaries_used(self) -> bool:
        return bool(self.native) and (self.trusted_signer is not None or self.opted_in)

    def describe(self) -> str:
        if not self.native:
            return "none in the file"
        if self.trusted_signer:
            return f"used (signed by trusted key {self.trusted_signer[:16]})"
        if self.opted_in:
            return "used (trusted by the caller)"
        return "dropped (not signed by a trusted key): built from regenerated source"

    def to_json(self) -> dict:
        return {
            "signers": list(self.signers),
            "trusted_signer": self.trusted_signer,
            "native_members": list(self.native),
            "binaries_used": self.binaries_used,
        }


def native_members(manifest: dict) -> tuple[str, ...]:
    return tuple(
        member
        for ref in manifest["variants"].values()
        for fname, member in ref.get("files", {}).items()
        if is_native(fname)
    )


def _signatures(manifest: dict, label: str) -> list[dict]:
    signatures = manifest.get("signatures", [])
    if not isinstance(signatures, list) or not all(
        isinstance(s, dict)
        and s.get("algorithm") == ALGORITHM
        and isinstance(s.get("key_id"), str)
        and isinstance(s.get("signature"), str)
        for s in signatures
    ):
        raise FormatError(f"{label}: corrupt: the manifest's signatures are not a list of ed25519 signatures")
    return signatures


def decide(container: Container, trust_binaries: bool = False, verified: bool = False) -> Trust:
    """The trust decision for `container` (`verified`: its members' hashes were checked when it was
    opened); raises FormatError if a trusted key's signature fails."""
    manifest, label = container.manifest, container.label
    signatures = _signatures(manifest, label)
    keys = trusted_keys() if signatures else {}
    trusted_signer = None
    for signature in signatures:
        key = keys.get(signature["key_id"])
        if key is None:
            continue
        if not verify(manifest, signature, key):
            raise FormatError(
                f"{label}: the signature by trusted key {signature['key_id'][:16]} does not verify: "
                "the file was changed after it was signed"
            )
        trusted_signer = signature["key_id"]
    trust = Trust(tuple(s["key_id"] for s in signatures), trusted_signer, trust_binaries, native_members(manifest))
    if trust.binaries_used and not verified:
        for member in trust.native:  # checked even when the caller skips hash checks: this is what runs
            container.check(member)
    return trust
