"""Revocation as a relying party sees it: a CA's CRL and its OCSP answer, both checked.

    crl = parse_crl(reply.content, issuer=ca_certificate, ca_name="primary")
    request = ocsp_request_der(leaf, issuer=ca_certificate)
    status = parse_ocsp_response(reply.content, leaf, issuer=ca_certificate, ca_name="primary")

A CRL that is not signed by the issuing CA, or an OCSP answer about another
certificate or not signed by the CA (or a responder it delegated to), is a
:class:`CABadResponseError`: never taken as "good".
"""

from __future__ import annotations

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509 import ocsp
from cryptography.x509.oid import ExtendedKeyUsageOID

from connector.ca._errors import CABadResponseError
from connector.ca._types import CertStatus

__all__ = ["ocsp_request_der", "parse_crl", "parse_ocsp_response"]


def parse_crl(
    body: bytes, *, issuer: x509.Certificate, ca_name: str
) -> x509.CertificateRevocationList:
    """A PEM or DER CRL, issued and signed by ``issuer``."""
    try:
        crl = (
            x509.load_pem_x509_crl(body)
            if body.lstrip().startswith(b"-----BEGIN")
            else x509.load_der_x509_crl(body)
        )
    except ValueError as exc:
        raise CABadResponseError(f"CRL is not a CRL: {exc}", ca_name=ca_name) from exc
    try:
        valid = crl.issuer == issuer.subject and crl.is_signature_valid(
            issuer.public_key()  # type: ignore[arg-type]
        )
    except (InvalidSignature, TypeError):
        valid = False
    if not valid:
        raise CABadResponseError("CRL is not signed by this CA", ca_name=ca_name)
    return crl


def ocsp_request_der(certificate: x509.Certificate, *, issuer: x509.Certificate) -> bytes:
    """An RFC 6960 request (SHA-1 CertID, as every responder accepts) for one certificate."""
    builder = ocsp.OCSPRequestBuilder().add_certificate(certificate, issuer, hashes.SHA1())  # noqa: S303
    return builder.build().public_bytes(Encoding.DER)


def _verify(signer: x509.Certificate, response: ocsp.OCSPResponse) -> bool:
    key = signer.public_key()
    algorithm = response.signature_hash_algorithm
    try:
        if isinstance(key, rsa.RSAPublicKey) and algorithm is not None:
            key.verify(
                response.signature, response.tbs_response_bytes, padding.PKCS1v15(), algorithm
            )
        elif isinstance(key, ec.EllipticCurvePublicKey) and algorithm is not None:
            key.verify(response.signature, response.tbs_response_bytes, ec.ECDSA(algorithm))
        else:
            return False
    except InvalidSignature:
        return False
    return True


def _signed_by_ca(response: ocsp.OCSPResponse, issuer: x509.Certificate) -> bool:
    if _verify(issuer, response):
        return True
    # A delegated responder: its certificate comes with the answer, issued by the CA
    # for OCSP signing.
    for delegate in response.certificates:
        try:
            delegate.verify_directly_issued_by(issuer)
            usage = delegate.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        except (InvalidSignature, ValueError, TypeError, x509.ExtensionNotFound):
            continue
        if ExtendedKeyUsageOID.OCSP_SIGNING in usage and _verify(delegate, response):
            return True
    return False


def parse_ocsp_response(
    body: bytes, certificate: x509.Certificate, *, issuer: x509.Certificate, ca_name: str
) -> CertStatus:
    """``good``, ``revoked`` or ``unknown`` for ``certificate``, from a verified answer."""
    try:
        response = ocsp.load_der_ocsp_response(body)
    except ValueError as exc:
        raise CABadResponseError(f"OCSP answer does not parse: {exc}", ca_name=ca_name) from exc
    if response.response_status != ocsp.OCSPResponseStatus.SUCCESSFUL:
        raise CABadResponseError(
            f"OCSP responder answered {response.response_status.name}", ca_name=ca_name
        )
    if response.serial_number != certificate.serial_number:
        raise CABadResponseError("OCSP answer is about another certificate", ca_name=ca_name)
    if not _signed_by_ca(response, issuer):
        raise CABadResponseError("OCSP answer is not signed by this CA", ca_name=ca_name)
    return {
        ocsp.OCSPCertStatus.GOOD: CertStatus.GOOD,
        ocsp.OCSPCertStatus.REVOKED: CertStatus.REVOKED,
    }.get(response.certificate_status, CertStatus.UNKNOWN)
