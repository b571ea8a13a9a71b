"""The server side of TLS, one way for both doors (HTTP and Bolt)."""

from __future__ import annotations

import ssl
from pathlib import Path

from proxy.settings_errors import ConfigurationError


def server_context(certificate: Path, key: Path | None) -> ssl.SSLContext:
    """A server TLS context from a PEM certificate chain and its key: TLS 1.2 at least, Python's
    default ciphers (no client certificate asked for; callers authenticate in the request).
    Raises ``OSError`` or ``ssl.SSLError`` if the files are missing or not a matching pair."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(certificate, key)
    return context


def check_pair(certificate: Path | None, key: Path | None, *, setting: str) -> None:
    """Refuse a certificate and key (``setting``: how the configuration names them) that do
    not load as a matching PEM pair: a :class:`ConfigurationError`, a line and no traceback."""
    if certificate is None:
        return
    try:
        server_context(certificate, key)
    except OSError as exc:  # ssl.SSLError among them
        # The library's words name the file's problem, never its contents.
        cause = exc.strerror or type(exc).__name__
        raise ConfigurationError(None, [f"{setting} do not load: {cause}"]) from None
