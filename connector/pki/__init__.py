"""Certificate machinery of the connector: keys, CSRs, PKCS#12 and the KRA envelope.

key = pool.take(profile.key_type)                   # or generate_key(KeyType.RSA2048)
csr = csr_for_profile(key, profile, variables)      # or build_csr(key, subject, sans, vars)
cert = validate_issued(pem, csr, chain, required_ekus=...)
blob = seal(pack_pfx(key, cert, chain, profile.name), kra_certificate)
"""

from connector.pki.csr import build_csr, csr_for_profile
from connector.pki.envelope import EnvelopeError, open_envelope, seal
from connector.pki.keypool import KeyPool
from connector.pki.keys import (
    KeyPolicyError,
    KeyType,
    PrivateKey,
    check_key,
    generate_key,
    key_type_of,
    public_key_id,
)
from connector.pki.pfx import PFX_PASSWORD, PfxError, load_pfx, pack_pfx, read_pfx
from connector.pki.templates import VARIABLES, ProfileTemplate, TemplateError, device_id_of
from connector.pki.validate import (
    CertificateValidationError,
    parse_certificate,
    validate_chain,
    validate_issued,
)

__all__ = [
    "PFX_PASSWORD",
    "VARIABLES",
    "CertificateValidationError",
    "EnvelopeError",
    "KeyPolicyError",
    "KeyPool",
    "KeyType",
    "PfxError",
    "PrivateKey",
    "ProfileTemplate",
    "TemplateError",
    "build_csr",
    "check_key",
    "csr_for_profile",
    "device_id_of",
    "generate_key",
    "key_type_of",
    "load_pfx",
    "open_envelope",
    "pack_pfx",
    "parse_certificate",
    "public_key_id",
    "read_pfx",
    "seal",
    "validate_chain",
    "validate_issued",
]
