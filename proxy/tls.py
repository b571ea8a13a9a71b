"""The server side of TLS, one way for both doors (HTTP and Bolt)."""

from __future__ import annotations

import ssl
from pathlib import Path


def server_context(certificate: Path, key: Path | None) -> ssl.SSLContext:
    """A server TLS context from a PEM certificate chain and its key: TLS 1.2 at least, Python's
    default ciphers (no client certificate asked for; callers authenticate in the request).
    Raises ``OSError`` or ``ssl.SSLError`` if the files are missing or not a matching pair."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(certificate, key)
    return context
