"""Issuance, revocation and CRLs on the real CFSSL lab CAs."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from chaos.launch.cfssl import CfsslLab
from connector.ca import CARouter, CertStatus, IssuedCertificate
from connector.pki import (
    KeyType,
    ProfileTemplate,
    csr_for_profile,
    generate_key,
    load_pfx,
    pack_pfx,
)

VARIABLES = {
    "UserName": "alice",
    "UserPrincipalName": "alice@contoso.test",
    "EmailAddress": "alice@contoso.test",
    "DeviceId": "5f3c9a2e-0d1b-4c7e-9a61-2b8f0e4d7c11",
    "AAD_Device_ID": "aad-77",
}
SANS = [
    "UPN={{UserPrincipalName}}",
    "email={{EmailAddress}}",
    "DNS=dev-{{UserName}}.devices.contoso.test",
    "URI=IntuneDeviceId://{{DeviceId}}",
]
EKU = {
    "user-auth": ExtendedKeyUsageOID.CLIENT_AUTH,
    "smime": ExtendedKeyUsageOID.EMAIL_PROTECTION,
    "wifi": ExtendedKeyUsageOID.CLIENT_AUTH,
}


def _issue(
    router: CARouter, template: str, key_type: KeyType = KeyType.P256
) -> tuple[IssuedCertificate, object]:
    profile = ProfileTemplate("p", "CN={{UserName}},O=Contoso", SANS, key_type, template)
    key = generate_key(key_type)
    csr = csr_for_profile(key, profile, VARIABLES)
    return router.issue(csr, template, "req-1", time.monotonic() + 10), key


def _pem(path: Path, certs: list[x509.Certificate]) -> Path:
    path.write_bytes(b"".join(c.public_bytes(Encoding.PEM) for c in certs))
    return path


def _openssl_verify(
    tmp_path: Path, lab: CfsslLab, leaf: x509.Certificate, *, crl_check: bool
) -> subprocess.CompletedProcess[str]:
    root = lab.root_certificate_path
    chain = _pem(tmp_path / "untrusted.pem", [lab.ca_certificate(n) for n in lab.names])
    leaf_path = _pem(tmp_path / f"leaf-{leaf.serial_number}.pem", [leaf])
    args = ["openssl", "verify", "-CAfile", str(root), "-untrusted", str(chain)]
    if crl_check:
        # -crl_download fetches the CRL from the CDP URL inside the certificate.
        args += ["-crl_check", "-crl_download"]
    return subprocess.run(
        [*args, str(leaf_path)], capture_output=True, text=True, check=False, timeout=30
    )


@pytest.mark.parametrize("template", ["user-auth", "smime", "wifi"])
def test_each_template_issues_with_its_usages_chain_and_cdp(
    cfssl_cas: CfsslLab, cfssl_router: Callable[..., CARouter], template: str
) -> None:
    issued, _ = _issue(cfssl_router(), template)
    cert = issued.certificate
    assert issued.ca_name == "primary"
    assert issued.serial == cert.serial_number
    assert issued.chain == [cfssl_cas.ca_certificate("primary"), cfssl_cas.root_certificate]
    assert EKU[template] in cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    cdp = cert.extensions.get_extension_for_class(x509.CRLDistributionPoints).value
    assert [n.value for p in cdp for n in p.full_name or []] == [cfssl_cas.crl_url("primary")]
    # The device ID survives the Debian CFSSL (which drops URI SANs) in the subject.
    assert (
        cert.subject.get_attributes_for_oid(NameOID.SERIAL_NUMBER)[0].value
        == (VARIABLES["DeviceId"])
    )
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.RFC822Name) == ["alice@contoso.test"]
    assert sans.get_values_for_type(x509.DNSName) == ["dev-alice.devices.contoso.test"]


@pytest.mark.parametrize("key_type", list(KeyType))
def test_each_key_type_issues_and_packs(
    cfssl_router: Callable[..., CARouter], key_type: KeyType
) -> None:
    issued, key = _issue(cfssl_router(), "user-auth", key_type)
    assert issued.certificate.public_key() == key.public_key()  # type: ignore[attr-defined]
    opened_key, cert, chain = load_pfx(pack_pfx(key, issued.certificate, issued.chain, "p"))  # type: ignore[arg-type]
    assert opened_key.public_key() == key.public_key()  # type: ignore[attr-defined]
    assert cert == issued.certificate
    assert chain == issued.chain


def test_openssl_accepts_a_good_certificate_with_crl_check(
    cfssl_cas: CfsslLab, cfssl_router: Callable[..., CARouter], tmp_path: Path
) -> None:
    issued, _ = _issue(cfssl_router(), "user-auth")
    result = _openssl_verify(tmp_path, cfssl_cas, issued.certificate, crl_check=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_revoked_certificate_is_on_the_crl_and_openssl_rejects_it(
    cfssl_cas: CfsslLab, cfssl_router: Callable[..., CARouter], tmp_path: Path
) -> None:
    router = cfssl_router()
    issued, _ = _issue(router, "wifi")
    router.revoke(issued.serial, issued.ca_name, "keyCompromise", time.monotonic() + 5)
    assert router.status(issued.serial, "primary") is CertStatus.REVOKED

    crl = router.cas["primary"].crl()
    entry = crl.get_revoked_certificate_by_serial_number(issued.serial)
    assert entry is not None
    reason = entry.extensions.get_extension_for_class(x509.CRLReason).value.reason
    assert reason is x509.ReasonFlags.key_compromise

    result = _openssl_verify(tmp_path, cfssl_cas, issued.certificate, crl_check=True)
    assert result.returncode != 0
    assert "certificate revoked" in result.stdout + result.stderr
    # Without the CRL check the same chain verifies: the rejection is the revocation.
    plain = _openssl_verify(tmp_path, cfssl_cas, issued.certificate, crl_check=False)
    assert plain.returncode == 0, plain.stdout + plain.stderr


def test_revoking_twice_is_success_and_unknown_serial_is_not_found(
    cfssl_router: Callable[..., CARouter],
) -> None:
    from connector.ca import CANotFoundError

    router = cfssl_router()
    issued, _ = _issue(router, "smime")
    router.revoke(issued.serial, "primary", "superseded", time.monotonic() + 5)
    router.revoke(issued.serial, "primary", "superseded", time.monotonic() + 5)
    # The API alone (no certdb short-cut) also treats it as done.
    router.cas["primary"].certdb = None  # type: ignore[attr-defined]
    router.revoke(issued.serial, "primary", "superseded", time.monotonic() + 5)
    with pytest.raises(CANotFoundError):
        router.revoke(123456789, "primary", "superseded", time.monotonic() + 5)


def test_revocation_goes_to_the_issuing_ca_only(
    cfssl_cas: CfsslLab, cfssl_router: Callable[..., CARouter]
) -> None:
    from connector.ca import CANotFoundError

    router = cfssl_router()
    issued, _ = _issue(router, "user-auth")
    assert router.ca_for(issued.certificate) == "primary"
    with pytest.raises(CANotFoundError):
        router.revoke(issued.serial, "secondary", "superseded", time.monotonic() + 5)
    router.revoke_certificate(issued.certificate, "superseded", time.monotonic() + 5)
    assert router.status(issued.serial, "primary") is CertStatus.REVOKED


def test_find_returns_what_every_ca_issued_for_a_key(cfssl_router: Callable[..., CARouter]) -> None:
    router = cfssl_router()
    issued, key = _issue(router, "user-auth")
    found = router.find(key.public_key())  # type: ignore[attr-defined]
    assert [(f.ca_name, f.serial, f.revoked) for f in found] == [("primary", issued.serial, False)]
    assert router.find(generate_key(KeyType.P256).public_key()) == []


def test_crl_endpoint_serves_pem_too(cfssl_cas: CfsslLab) -> None:
    reply = httpx.get(cfssl_cas.crl_url("secondary") + ".pem")
    crl = x509.load_pem_x509_crl(reply.content)
    assert crl.issuer == cfssl_cas.ca_certificate("secondary").subject
