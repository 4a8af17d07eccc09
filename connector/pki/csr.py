"""Certificate signing requests from profile templates.

    csr = build_csr(key, "CN={{UserName}}", ["UPN={{UserPrincipalName}}"], variables)
    csr = csr_for_profile(key, profile, variables)

The CSR carries the rendered subject (serialNumber = device ID always) and a
SubjectAlternativeName extension when the profile has SAN templates. It is
signed with the new key, SHA-256 (SHA-384 for P-384).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from connector.pki.keys import KeyType, PrivateKey, check_key, key_type_of
from connector.pki.templates import ProfileTemplate

__all__ = ["build_csr", "csr_for_profile", "signature_hash"]


def signature_hash(key: PrivateKey) -> hashes.SHA256 | hashes.SHA384:
    if isinstance(key, ec.EllipticCurvePrivateKey) and key_type_of(key) is KeyType.P384:
        return hashes.SHA384()
    return hashes.SHA256()


def csr_for_profile(
    key: PrivateKey, profile: ProfileTemplate, variables: Mapping[str, str]
) -> x509.CertificateSigningRequest:
    key = check_key(key)
    builder = x509.CertificateSigningRequestBuilder().subject_name(
        profile.render_subject(variables)
    )
    sans = profile.render_sans(variables)
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return builder.sign(key, signature_hash(key))


def build_csr(
    key: PrivateKey,
    subject_template: str,
    san_templates: Sequence[str],
    variables: Mapping[str, str],
) -> x509.CertificateSigningRequest:
    """A CSR for ``key`` from a subject template and SAN templates (see :mod:`.templates`)."""
    profile = ProfileTemplate(
        name="adhoc",
        subject=subject_template,
        san=tuple(san_templates),
        key_type=key_type_of(key),
    )
    return csr_for_profile(key, profile, variables)
