"""What a connector's configured files hold: checked before anything starts.

    config = load_config("/etc/pfxha/connector.toml")
    problems = file_problems(config)   # [ConfigError, ...], each naming its setting
    check_files(config)                # raises the first one

:func:`connector.config.parse_config` reads no file; this module does, so that
``pfxha connector run --check`` fails on what would fail at run time, with the
setting at fault instead of a traceback:

* every file named exists and is readable (a directory where one is meant);
* secret files (``zookeeper.auth_password_file``, ``ca[*].auth_key_file``,
  ``ca[*].role_id_file`` and ``secret_id_file`` of an OpenBao CA, the
  identity's ``key.pem``) are not accessible by group or others (0600, or a
  systemd credential), and hold something (a CFSSL key is hex);
* certificates parse: ``ca[*].certificate`` is signed by ``ca[*].root``, which
  is self-signed (the chain every issued certificate is checked against);
  ``service.ca_file`` and ``ca[*].ca_file`` hold PEM certificates;
* ``service.identity_dir`` holds a private key and the certificate for that
  very key, not yet expired, in a directory the connector may write (renewal
  swaps both in by rename);
* ``ca[*].certdb``, when it is a file path, exists.

Run it as the user the service runs as (the unit's ``ExecStartPre=`` does), or
the permission checks answer for the wrong user.
"""

from __future__ import annotations

import datetime as dt
import os
import stat
from collections.abc import Callable
from functools import partial
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from connector.config import ConfigError, ConnectorConfig

__all__ = ["check_files", "file_problems"]

KEY_FILE, CERT_FILE = "key.pem", "cert.pem"  # connector.identity's names


class _FileError(Exception):
    """One file's problem; becomes a ConfigError under the setting that names it."""


def check_files(config: ConnectorConfig) -> None:
    """Raise the first :class:`ConfigError` of :func:`file_problems`, if any."""
    problems = file_problems(config)
    if problems:
        raise problems[0]


def file_problems(config: ConnectorConfig, *, now: dt.datetime | None = None) -> list[ConfigError]:
    """Every problem with the files ``config`` names, in the file's order."""
    now = now or dt.datetime.now(dt.UTC)
    checks: list[tuple[str, Callable[[], object]]] = []
    zk = config.zookeeper
    if zk.auth_password_file:
        checks.append(("zookeeper.auth_password_file", partial(_secret, zk.auth_password_file)))
    service = config.service
    if service.ca_file:
        checks.append(("service.ca_file", partial(_certificates, service.ca_file)))
    if service.identity_dir:
        checks.append(("service.identity_dir", partial(_identity, service.identity_dir, now)))
    for ca in config.cas:
        label = f"ca[{ca.name}]"
        if ca.auth_key_file is not None:
            checks.append((f"{label}.auth_key_file", partial(_hex_key, ca.auth_key_file)))
        for setting in ("role_id_file", "secret_id_file"):
            secret_file = getattr(ca, setting)
            if secret_file is not None:
                checks.append((f"{label}.{setting}", partial(_secret, secret_file)))
        checks.append((f"{label}.certificate", partial(_certificates, ca.certificate)))
        checks.append((f"{label}.root", partial(_chain, ca.certificate, ca.root)))
        if ca.ca_file:
            checks.append((f"{label}.ca_file", partial(_certificates, ca.ca_file)))
        if ca.client_certificate and ca.client_key_file:
            checks.append(
                (
                    f"{label}.client_key_file",
                    partial(_pair, ca.client_certificate, ca.client_key_file, now),
                )
            )
        if ca.certdb and "://" not in ca.certdb:
            checks.append((f"{label}.certdb", partial(_readable, ca.certdb)))
    problems = []
    for setting, check in checks:
        try:
            check()
        except _FileError as exc:
            problems.append(ConfigError(setting, str(exc)))
    return problems


def _readable(path: str | None) -> bytes:
    assert path is not None
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except FileNotFoundError:
        raise _FileError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise _FileError(f"{path}: is a directory, not a file") from None
    except OSError as exc:
        raise _FileError(f"{path}: cannot read: {exc.strerror or exc}") from None


def _private(path: str) -> None:
    mode = stat.S_IMODE(os.stat(path).st_mode)
    if mode & 0o077:
        raise _FileError(
            f"{path} holds a secret but group/others may access it (mode {oct(mode)}); "
            f"run: chmod 600 {path}"
        )


def _secret(path: str | None) -> bytes:
    data = _readable(path)
    assert path is not None
    _private(path)
    if not data.strip():
        raise _FileError(f"{path} is empty")
    return data


def _hex_key(path: str) -> None:
    data = _secret(path).strip()
    try:
        bytes.fromhex(data.decode("ascii"))
    except (UnicodeDecodeError, ValueError):
        raise _FileError(f"{path}: a CFSSL auth key is hex (e.g. 64 hex digits)") from None


def _certificates(path: str | None) -> list[x509.Certificate]:
    data = _readable(path)
    try:
        certs = x509.load_pem_x509_certificates(data)
    except ValueError:
        raise _FileError(f"{path}: not a PEM certificate (-----BEGIN CERTIFICATE-----)") from None
    return certs


def _chain(certificate: str, root: str) -> None:
    """``root`` parses, and ``certificate`` chains to it (what CfsslCA checks at start)."""
    from connector.pki.validate import CertificateValidationError, validate_chain

    parents = _certificates(root)
    try:
        issuing = _certificates(certificate)[0]
    except _FileError:
        return  # reported under .certificate
    try:
        validate_chain([issuing, *parents])
    except CertificateValidationError as exc:
        raise _FileError(f"{root} does not verify {certificate}: {exc}") from None


def _pair(
    cert_path: str,
    key_path: str,
    now: dt.datetime,
    *,
    remedy: str = "issue a new pair",
    expired: str = "(issue a new one)",
) -> None:
    """``key_path`` is a private PEM key (0600) and ``cert_path`` its valid certificate."""
    key_pem = _secret(key_path)
    try:
        key = serialization.load_pem_private_key(key_pem, password=None)
    except (ValueError, TypeError):
        raise _FileError(f"{key_path}: not an unencrypted PEM private key") from None
    cert = _certificates(cert_path)[0]
    spki = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    if cert.public_key().public_bytes(*spki) != key.public_key().public_bytes(*spki):
        raise _FileError(f"{cert_path} is not the certificate of {key_path} ({remedy})")
    if cert.not_valid_after_utc <= now:
        raise _FileError(
            f"{cert_path} expired on {cert.not_valid_after_utc:%Y-%m-%d %H:%M} UTC {expired}"
        )


def _identity(directory: str | None, now: dt.datetime) -> None:
    assert directory is not None
    where = Path(directory)
    if not where.is_dir():
        raise _FileError(
            f"{directory}: no such directory; run `pfxha connector enroll --out {directory}`"
        )
    _pair(
        str(where / CERT_FILE),
        str(where / KEY_FILE),
        now,
        remedy="enroll again",
        expired="and cannot be renewed; enroll again with a new token",
    )
    if not os.access(where, os.W_OK | os.X_OK):
        raise _FileError(
            f"{directory}: not writable by this user (uid {os.geteuid()}); renewal writes "
            "the new key and certificate here (a systemd StateDirectory=)"
        )
