"""ed25519 signatures over a .hamr manifest, and the keys this process trusts.

A signature covers the canonical JSON of the manifest without its `signatures` list. The
manifest names every member with its sha256, so a valid signature vouches for every member
whose bytes match it. A key is named by its key id: the sha256 of its 32 raw public bytes.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from hamr.errors import HamrError

ALGORITHM = "ed25519"
TRUSTED_KEYS_ENV = "HAMR_TRUSTED_KEYS"  # os.pathsep-separated public key files


class KeyFileError(HamrError):
    """A key file is missing, unreadable or not an ed25519 key."""


def key_id(public: Ed25519PublicKey) -> str:
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()


def public_path(private_path: Path) -> Path:
    return Path(private_path).with_suffix(".pub")


def generate(private_path: Path) -> tuple[Path, str]:
    """Write a new private key (PEM, mode 0600) and its public key beside it (.pub); return (.pub, key id)."""
    private_path = Path(private_path)
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    try:
        fd = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise KeyFileError(f"{private_path} already exists; not overwriting a key") from None
    except OSError as exc:
        raise KeyFileError(f"cannot write {private_path}: {exc.strerror}") from None
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
    public = public_path(private_path)
    public.write_bytes(
        key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    return public, key_id(key.public_key())


def _read(path: Path, what: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise KeyFileError(f"cannot read {what} {path}: {exc.strerror}") from None


def load_private(path: Path) -> Ed25519PrivateKey:
    try:
        key = serialization.load_pem_private_key(_read(path, "private key"), password=None)
    except (ValueError, TypeError) as exc:
        raise KeyFileError(f"{path} is not an unencrypted PEM private key ({exc})") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise KeyFileError(f"{path} is not an ed25519 private key")
    return key


def load_public(path: Path) -> Ed25519PublicKey:
    try:
        key = serialization.load_pem_public_key(_read(path, "public key"))
    except (ValueError, TypeError) as exc:
        raise KeyFileError(f"{path} is not a PEM public key ({exc})") from None
    if not isinstance(key, Ed25519PublicKey):
        raise KeyFileError(f"{path} is not an ed25519 public key")
    return key


def trusted_key_files() -> list[Path]:
    """The files named by $HAMR_TRUSTED_KEYS."""
    from hamr.settings import settings

    return [Path(e.strip()) for e in settings().trusted_keys.split(os.pathsep) if e.strip()]


def trusted_keys() -> dict[str, Ed25519PublicKey]:
    """The keys named by $HAMR_TRUSTED_KEYS, by key id (read at each call: a pool may add keys)."""
    keys = [load_public(path) for path in trusted_key_files()]
    return {key_id(key): key for key in keys}


def add_trusted_keys(paths: list[Path]) -> list[str]:
    """Check `paths` and add them to $HAMR_TRUSTED_KEYS of this process (its children inherit it)."""
    ids = [key_id(load_public(Path(p))) for p in paths]
    from hamr.settings import settings

    entries = [e for e in settings().trusted_keys.split(os.pathsep) if e]
    entries += [str(Path(p).resolve()) for p in paths]
    if entries:
        os.environ[TRUSTED_KEYS_ENV] = os.pathsep.join(entries)
    return ids


def signed_bytes(manifest: dict) -> bytes:
    unsigned = {k: v for k, v in manifest.items() if k != "signatures"}
    return json.dumps(unsigned, sort_keys=True, separators=(",", ":")).encode()


def sign(manifest: dict, key: Ed25519PrivateKey) -> dict:
    """The manifest with a signature by `key` added (replacing an earlier one by the same key)."""
    kid = key_id(key.public_key())
    entry = {"algorithm": ALGORITHM, "key_id": kid, "signature": key.sign(signed_bytes(manifest)).hex()}
    others = [s for s in manifest.get("signatures", []) if s.get("key_id") != kid]
    return dict(manifest, signatures=[*others, entry])


def verify(manifest: dict, signature: dict, key: Ed25519PublicKey) -> bool:
    try:
        key.verify(bytes.fromhex(signature["signature"]), signed_bytes(manifest))
    except (InvalidSignature, ValueError):
        return False
    return True
