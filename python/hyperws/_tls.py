"""The TLS options of a Server: checked here, loaded by the engine (rustls) when the Server is made."""

from __future__ import annotations

import os
import re
from typing import Any

from . import _core

PathLike = str | os.PathLike[str]
CLIENT_AUTH = ("none", "optional", "required")
# A DNS name, or a wildcard for one label: *.example.com
SERVER_NAME = re.compile(r"^(\*\.)?([A-Za-z0-9_-]+\.)*[A-Za-z0-9_-]+$")


def tls_config(
    *,
    cert_file: PathLike | None,
    key_file: PathLike | None,
    key_password: str | None,
    ca_file: PathLike | None,
    client_auth: str,
    cert_file_name: PathLike | None,
    key_file_name: PathLike | None,
    passphrase: str | None,
) -> _core.TlsConfig | None:
    """The engine's TLS configuration, or None for plain TCP. HyperExpress' names are accepted too."""
    cert_file = _one_of("cert_file", cert_file, "cert_file_name", cert_file_name)
    key_file = _one_of("key_file", key_file, "key_file_name", key_file_name)
    key_password = _one_of("key_password", key_password, "passphrase", passphrase)
    if cert_file is None and key_file is None:
        for name, value in (("key_password", key_password), ("ca_file", ca_file)):
            if value is not None:
                raise ValueError(f"{name} is for TLS: give cert_file and key_file too")
        if client_auth != "none":
            raise ValueError("client_auth is for TLS: give cert_file and key_file too")
        return None
    if cert_file is None or key_file is None:
        missing = "cert_file" if cert_file is None else "key_file"
        raise ValueError(f"TLS needs both cert_file and key_file: {missing} is missing")
    if client_auth not in CLIENT_AUTH:
        raise ValueError(f"client_auth must be one of {CLIENT_AUTH}, got {client_auth!r}")
    if key_password is not None and not isinstance(key_password, str):
        raise ValueError("key_password must be a str")
    return _core.TlsConfig(
        os.fspath(cert_file),
        os.fspath(key_file),
        key_password,
        os.fspath(ca_file) if ca_file is not None else None,
        client_auth,
    )


def check_server_name(name: str) -> str:
    if not isinstance(name, str) or not SERVER_NAME.match(name):
        raise ValueError(f"a server name is a DNS name or *.domain, got {name!r}")
    return name


def _one_of(name: str, value: Any, alias: str, alias_value: Any) -> Any:
    if value is not None and alias_value is not None:
        raise ValueError(f"give {name} or {alias} (HyperExpress' name for it), not both")
    return value if value is not None else alias_value
