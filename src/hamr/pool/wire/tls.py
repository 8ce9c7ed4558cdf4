"""TLS for the pool's HTTP API: the server's certificate, and which certificates its clients trust.

`hamr pool up --tls-cert FILE --tls-key FILE` serves https. Clients (the `hamr pool` commands,
`hamr agent`, hamr.pool.wire.client.InferClient) verify the server against the system's certificate
authorities, or against the CA file in `$HAMR_CA_FILE` (`hamr agent --ca FILE`), which is how a
self-signed certificate is trusted. A plain http:// URL uses none of this.
"""

from __future__ import annotations

import ssl
from pathlib import Path

from hamr.errors import HamrError

CA_ENV = "HAMR_CA_FILE"


def server_files(cert: Path | None, key: Path | None) -> tuple[str, str] | None:
    """The certificate and key files to serve https with (None: plain http), checked to load as a pair."""
    if cert is None and key is None:
        return None
    if cert is None or key is None:
        raise HamrError("https needs both --tls-cert and --tls-key")
    try:
        ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(str(cert), str(key))
    except FileNotFoundError as exc:
        raise HamrError(f"cannot serve https: no such file {exc.filename or cert}") from None
    except (ssl.SSLError, OSError) as exc:
        detail = getattr(exc, "reason", None) or exc.strerror or str(exc)
        raise HamrError(f"cannot serve https with {cert} and {key}: {detail}") from None
    return str(cert), str(key)


def client_context(url: str, ca: Path | str | None = None) -> ssl.SSLContext | None:
    """What a client of `url` verifies the server with: None for http://; for https://, the system's
    authorities, or only the CA file `ca` (default $HAMR_CA_FILE)."""
    if not url.lower().startswith("https://"):
        return None
    from hamr.settings import settings  # here: importing the data-plane client stays light

    ca = ca or settings().ca_file or None
    try:
        return ssl.create_default_context(cafile=str(ca) if ca else None)
    except FileNotFoundError:
        raise HamrError(f"no CA file {ca} (from --ca or ${CA_ENV})") from None
    except (ssl.SSLError, OSError) as exc:
        raise HamrError(f"cannot trust the CA file {ca}: {exc}") from None


def untrusted(exc: BaseException) -> str:
    """For a connection error: '' unless the server's certificate failed verification, else what to do."""
    seen = exc
    while seen is not None:
        if isinstance(seen, ssl.SSLCertVerificationError) or "CERTIFICATE_VERIFY_FAILED" in str(seen):
            return f" (its certificate is not trusted here: point --ca or ${CA_ENV} at the CA file that signed it)"
        seen = seen.__cause__ or seen.__context__
    return ""


def httpx_verify(url: str, ca: Path | str | None = None) -> ssl.SSLContext | bool:
    """client_context as httpx's `verify`."""
    context = client_context(url, ca)
    return context if context is not None else True


__all__ = ["CA_ENV", "client_context", "httpx_verify", "server_files", "untrusted"]
