"""One issuing CA of the CFSSL lab as a connector's ``[[ca]]`` table sees it.

    ca = lab.ca("primary", client="c1")   # built by CfsslLab from its state and files
    ca.url, ca.auth_key, ca.certdb_dsn    # where it serves, its auth key, its certdb
    ca.as_dict()                          # the table written to cas.json (0600: secrets)

A plain record: the lab fills it, :meth:`LabCA.as_dict` serialises it, and
the mutual-TLS fields are left out of the table when the lab serves plain HTTP.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["LabCA"]


@dataclass(frozen=True)
class LabCA:
    """Where one issuing CA lives and how to talk to it (``describe()`` serialises this)."""

    name: str
    url: str
    auth_key_name: str
    auth_key: str  # hex, a secret: state.json and cas.json are 0600
    certificate: Path
    key: Path
    certdb_dsn: str  # the read-only role's DSN (no password)
    certdb_password_file: Path  # 0600
    root: Path
    crl_url: str
    profiles: tuple[str, ...]
    # Mutual TLS (None: plain HTTP): the access CA and the client's own pair.
    ca_file: Path | None = None
    client_certificate: Path | None = None
    client_key_file: Path | None = None  # 0600

    def as_dict(self) -> dict[str, Any]:
        tls = {
            key: str(value)
            for key, value in (
                ("ca_file", self.ca_file),
                ("client_certificate", self.client_certificate),
                ("client_key_file", self.client_key_file),
            )
            if value is not None
        }
        return {
            **tls,
            "name": self.name,
            "url": self.url,
            "auth_key_name": self.auth_key_name,
            "auth_key": self.auth_key,
            "certificate": str(self.certificate),
            "root": str(self.root),
            "certdb_dsn": self.certdb_dsn,
            "certdb_password_file": str(self.certdb_password_file),
            "crl_url": self.crl_url,
            "profiles": list(self.profiles),
        }
