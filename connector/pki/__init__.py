"""Certificate machinery of the connector: keys, CSRs, PKCS#12 and the KRA envelope."""

from connector.pki.envelope import EnvelopeError, open_envelope, seal

__all__ = ["EnvelopeError", "open_envelope", "seal"]
