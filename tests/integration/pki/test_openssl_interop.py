"""The whole path through the openssl CLI, and no private key material on disk or in logs.

connector: key -> CSR -> CFSSL -> PKCS#12 -> CMS to the KRA certificate
service:   open with the KRA key (openssl cms -decrypt), re-seal to the device's certificate
device:    open with its management key (openssl cms -decrypt), read the PFX
           (openssl pkcs12 -info), verify the chain and CRL (openssl verify -crl_check)

Decrypted PFX bytes only ever travel through pipes, never files: the last test greps
every file of the test session and the logs for the private keys the pipeline made.
"""

from __future__ import annotations

import base64
import datetime as dt
import logging
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from chaos.launch.cfssl import CfsslLab
from connector.ca import CARouter
from connector.pki import (
    KeyType,
    PrivateKey,
    ProfileTemplate,
    csr_for_profile,
    generate_key,
    load_pfx,
    open_envelope,
    pack_pfx,
    seal,
)

PROFILE_SANS = ["UPN={{UserPrincipalName}}", "email={{EmailAddress}}"]
VARIABLES = {
    "UserName": "dave",
    "UserPrincipalName": "dave@contoso.test",
    "EmailAddress": "dave@contoso.test",
    "DeviceId": "dev-dave-01",
}
# Keys made by the pipeline in this module: the leak test looks for each of them.
PIPELINE_KEYS: list[PrivateKey] = []


def _recipient(cn: str, tmp: Path) -> tuple[rsa.RSAPrivateKey, x509.Certificate, Path, Path]:
    """An RSA key pair + self-signed certificate (the KRA, or a device management cert)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    cert_path = tmp / f"{cn}.pem"
    key_path = tmp / f"{cn}-key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return key, cert, cert_path, key_path


def _openssl(*args: str, stdin: bytes | None = None) -> bytes:
    result = subprocess.run(
        ["openssl", *args], input=stdin, capture_output=True, check=False, timeout=30
    )
    assert result.returncode == 0, result.stderr.decode(errors="replace")
    return result.stdout


@pytest.fixture(scope="module")
def pipeline_log(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Every log record of the module at DEBUG, in a file, as a deployment would keep it."""
    path = tmp_path_factory.mktemp("logs") / "connector.log"
    handler = logging.FileHandler(path)
    handler.setLevel(logging.DEBUG)
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    yield path
    root.removeHandler(handler)
    root.setLevel(old_level)
    handler.close()


@pytest.mark.parametrize("key_type", [KeyType.RSA2048, KeyType.P384])
def test_kra_service_and_device_open_it_with_openssl(
    cfssl_cas: CfsslLab,
    cfssl_router: Callable[..., CARouter],
    tmp_path: Path,
    pipeline_log: Path,
    key_type: KeyType,
) -> None:
    router = cfssl_router()
    kra_key, kra_cert, kra_pem, kra_key_pem = _recipient("kra", tmp_path)
    _, device_cert, device_pem, device_key_pem = _recipient("device", tmp_path)

    # Connector.
    profile = ProfileTemplate("corp-wifi", "CN={{UserName}}", PROFILE_SANS, key_type, "wifi")
    key = generate_key(key_type)
    PIPELINE_KEYS.append(key)
    issued = router.issue(
        csr_for_profile(key, profile, VARIABLES), "wifi", "r1", time.monotonic() + 5
    )
    envelope = seal(pack_pfx(key, issued.certificate, issued.chain, profile.name), kra_cert)
    (tmp_path / "upload.p7m").write_bytes(envelope)  # what travels to the service

    # Service: openssl with the KRA key, then re-sealed to the device.
    pfx = _openssl(
        "cms",
        "-decrypt",
        "-binary",
        "-inform",
        "DER",
        "-in",
        str(tmp_path / "upload.p7m"),
        "-recip",
        str(kra_pem),
        "-inkey",
        str(kra_key_pem),
    )
    assert pfx == open_envelope(envelope, kra_cert, kra_key)
    (tmp_path / "to-device.p7m").write_bytes(seal(pfx, device_cert))

    # Device: openssl with its management key; the PFX reads with openssl and with us.
    delivered = _openssl(
        "cms",
        "-decrypt",
        "-binary",
        "-inform",
        "DER",
        "-in",
        str(tmp_path / "to-device.p7m"),
        "-recip",
        str(device_pem),
        "-inkey",
        str(device_key_pem),
    )
    info = _openssl("pkcs12", "-info", "-passin", "pass:", "-noenc", stdin=delivered).decode()
    assert "friendlyName: corp-wifi" in info
    assert info.count("BEGIN CERTIFICATE") == 3  # leaf, issuing CA, root
    assert "PRIVATE KEY" in info
    device_key, cert, chain = load_pfx(delivered)
    assert device_key.public_key() == key.public_key()
    assert cert == issued.certificate

    leaf = _openssl("pkcs12", "-nokeys", "-clcerts", "-passin", "pass:", stdin=delivered)
    (tmp_path / "leaf.pem").write_bytes(leaf)
    untrusted = tmp_path / "chain.pem"
    untrusted.write_bytes(chain[0].public_bytes(serialization.Encoding.PEM))
    verified = _openssl(
        "verify",
        "-CAfile",
        str(cfssl_cas.root_certificate_path),
        "-untrusted",
        str(untrusted),
        "-crl_check",
        "-crl_download",
        str(tmp_path / "leaf.pem"),
    )
    assert b": OK" in verified


def _needles(key: PrivateKey) -> dict[str, bytes]:
    der = key.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    pem_body = base64.b64encode(der)
    if isinstance(key, rsa.RSAPrivateKey):
        secret = key.private_numbers().d
    else:
        assert isinstance(key, ec.EllipticCurvePrivateKey)
        secret = key.private_numbers().private_value
    return {
        "PKCS#8 DER": der,
        "PEM line": pem_body[64:128],  # any full line of the PEM body
        "secret hex": f"{secret:x}".encode(),
        "secret decimal": str(secret).encode(),
        "secret bytes": secret.to_bytes((secret.bit_length() + 7) // 8, "big"),
    }


def test_no_private_key_material_in_any_file_or_log_of_the_run(
    tmp_path_factory: pytest.TempPathFactory,
    cfssl_cas: CfsslLab,
    pipeline_log: Path,
) -> None:
    assert PIPELINE_KEYS, "the pipeline tests above must run first (same module)"
    logging.getLogger().handlers[-1].flush()
    assert pipeline_log.stat().st_size > 0  # the run did log (CA events, httpx requests)
    roots = {tmp_path_factory.getbasetemp(), cfssl_cas.run_dir}
    files = [p for root in roots for p in root.rglob("*") if p.is_file()]
    assert any(p.name.startswith("cfssl-") for p in files)  # the CA logs are covered
    for key in PIPELINE_KEYS:
        for what, needle in _needles(key).items():
            for path in files:
                assert needle not in path.read_bytes(), f"{what} of a pipeline key in {path}"
