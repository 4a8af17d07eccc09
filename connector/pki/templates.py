"""Profile templates: subject and SAN with Intune-style variables.

    t = ProfileTemplate(
        name="corp-wifi",
        subject="CN={{UserName}},E={{EmailAddress}},O=Contoso",
        san=["UPN={{UserPrincipalName}}", "email={{EmailAddress}}",
             "URI=IntuneDeviceId://{{DeviceId}}", "DNS={{DeviceId}}.devices.contoso.test"],
        key_type=KeyType.RSA2048,
        ca_template="wifi",
    )
    name = t.render_subject(variables)     # x509.Name, serialNumber = device id added
    sans = t.render_sans(variables)        # list of x509 GeneralName

Templates are parsed when the profile is built: an unknown variable, an
unknown attribute or SAN type, or a stray brace is a :class:`TemplateError`
then, not a blank field in a certificate later. At render time a variable
without a value is an error too. The device ID (``DeviceId``, else
``AAD_Device_ID``) always lands in the subject's serialNumber attribute: the
Debian CFSSL keeps subject attributes but drops URI SANs.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from cryptography import x509
from cryptography.x509.oid import NameOID, ObjectIdentifier

from connector.pki.keys import KeyType

__all__ = [
    "UPN_OID",
    "VARIABLES",
    "ProfileTemplate",
    "TemplateError",
    "device_id_of",
    "parse_san_templates",
    "parse_subject_template",
]

VARIABLES = frozenset(
    {"UserName", "UserPrincipalName", "EmailAddress", "DeviceId", "AAD_Device_ID"}
)
UPN_OID = ObjectIdentifier("1.3.6.1.4.1.311.20.2.3")  # Microsoft UPN otherName

_PLACEHOLDER = re.compile(r"\{\{\s*([^{}]*?)\s*\}\}")

_ATTRIBUTES: dict[str, ObjectIdentifier] = {
    "CN": NameOID.COMMON_NAME,
    "E": NameOID.EMAIL_ADDRESS,
    "EMAIL": NameOID.EMAIL_ADDRESS,
    "EMAILADDRESS": NameOID.EMAIL_ADDRESS,
    "O": NameOID.ORGANIZATION_NAME,
    "OU": NameOID.ORGANIZATIONAL_UNIT_NAME,
    "L": NameOID.LOCALITY_NAME,
    "ST": NameOID.STATE_OR_PROVINCE_NAME,
    "S": NameOID.STATE_OR_PROVINCE_NAME,
    "C": NameOID.COUNTRY_NAME,
    "STREET": NameOID.STREET_ADDRESS,
    "SERIALNUMBER": NameOID.SERIAL_NUMBER,
    "UID": NameOID.USER_ID,
    "DC": NameOID.DOMAIN_COMPONENT,
    "G": NameOID.GIVEN_NAME,
    "GIVENNAME": NameOID.GIVEN_NAME,
    "SN": NameOID.SURNAME,
    "SURNAME": NameOID.SURNAME,
    "T": NameOID.TITLE,
    "TITLE": NameOID.TITLE,
}
_SAN_TYPES = {"UPN": "upn", "EMAIL": "email", "RFC822": "email", "DNS": "dns", "URI": "uri"}


class TemplateError(ValueError):
    """A malformed template, an unknown variable, or a variable without a value."""


@dataclass(frozen=True)
class _Field:
    """One template field: a kind (attribute OID or SAN type) and a value with placeholders."""

    kind: ObjectIdentifier | str
    label: str
    value: str
    variables: frozenset[str]

    def render(self, variables: Mapping[str, str]) -> str:
        def substitute(match: re.Match[str]) -> str:
            value = variables.get(match.group(1), "")
            if not value:
                raise TemplateError(f"{self.label}: variable {{{{{match.group(1)}}}}} has no value")
            return value

        rendered = _PLACEHOLDER.sub(substitute, self.value).strip()
        if not rendered:
            raise TemplateError(f"{self.label}: renders to an empty value")
        return rendered


def _parse_value(label: str, value: str) -> frozenset[str]:
    names = set()
    for match in _PLACEHOLDER.finditer(value):
        name = match.group(1)
        if name not in VARIABLES:
            allowed = ", ".join(sorted(VARIABLES))
            raise TemplateError(f"{label}: unknown variable {{{{{name}}}}}; known: {allowed}")
        names.add(name)
    leftover = _PLACEHOLDER.sub("", value)
    if "{" in leftover or "}" in leftover:
        raise TemplateError(f"{label}: unbalanced braces in {value!r}")
    return frozenset(names)


def _split_unescaped(text: str, sep: str) -> list[str]:
    parts, current, escaped = [], [], False
    for ch in text:
        if escaped:
            current.append(ch)
            escaped = False
        elif ch == "\\":
            escaped = True
        elif ch == sep:
            parts.append("".join(current))
            current = []
        else:
            current.append(ch)
    if escaped:
        raise TemplateError(f"dangling escape at the end of {text!r}")
    parts.append("".join(current))
    return parts


def parse_subject_template(template: str) -> tuple[_Field, ...]:
    """``CN={{UserName}},O=Contoso`` -> fields; escape a literal comma as ``\\,``."""
    if not template.strip():
        raise TemplateError("subject template is empty")
    fields = []
    for part in _split_unescaped(template, ","):
        attr, sep, value = part.partition("=")
        attr = attr.strip()
        if not sep or not attr or not value.strip():
            raise TemplateError(f"subject: {part.strip()!r} is not ATTRIBUTE=value")
        oid = _ATTRIBUTES.get(attr.upper())
        if oid is None:
            raise TemplateError(
                f"subject: unknown attribute {attr!r}; known: {', '.join(sorted(_ATTRIBUTES))}"
            )
        label = f"subject {attr}"
        fields.append(_Field(oid, label, value.strip(), _parse_value(label, value)))
    return tuple(fields)


def parse_san_templates(templates: Sequence[str]) -> tuple[_Field, ...]:
    """``["UPN={{UserPrincipalName}}", "URI=IntuneDeviceId://{{DeviceId}}"]`` -> fields."""
    fields = []
    for entry in templates:
        match = re.match(r"\s*([A-Za-z0-9]+)\s*[=:]\s*(.*)$", entry, re.DOTALL)
        if match is None or not match.group(2).strip():
            raise TemplateError(f"SAN: {entry!r} is not TYPE=value (UPN, email, DNS, URI)")
        kind = _SAN_TYPES.get(match.group(1).upper())
        if kind is None:
            raise TemplateError(f"SAN: unknown type {match.group(1)!r}; use UPN, email, DNS or URI")
        label = f"SAN {match.group(1)}"
        value = match.group(2).strip()
        fields.append(_Field(kind, label, value, _parse_value(label, value)))
    return tuple(fields)


def device_id_of(variables: Mapping[str, str]) -> str:
    device_id = variables.get("DeviceId") or variables.get("AAD_Device_ID") or ""
    if not device_id.strip():
        raise TemplateError("the request has no device id (DeviceId or AAD_Device_ID)")
    return device_id.strip()


def _der_utf8(text: str) -> bytes:
    body = text.encode("utf-8")
    n = len(body)
    length = (
        bytes([n])
        if n < 0x80
        else bytes([0x80 | ((n.bit_length() + 7) // 8)])
        + (n.to_bytes((n.bit_length() + 7) // 8, "big"))
    )
    return b"\x0c" + length + body


def _general_name(kind: str, label: str, value: str) -> x509.GeneralName:
    if kind == "upn":
        if "@" not in value:
            raise TemplateError(f"{label}: {value!r} is not a user principal name")
        return x509.OtherName(UPN_OID, _der_utf8(value))
    if kind == "email":
        if value.count("@") != 1 or " " in value:
            raise TemplateError(f"{label}: {value!r} is not an email address")
        return x509.RFC822Name(value)
    if kind == "dns":
        if not re.fullmatch(r"[A-Za-z0-9*]([A-Za-z0-9.-]*[A-Za-z0-9])?", value):
            raise TemplateError(f"{label}: {value!r} is not a DNS name")
        return x509.DNSName(value)
    if "://" not in value or " " in value:
        raise TemplateError(f"{label}: {value!r} is not a URI")
    return x509.UniformResourceIdentifier(value)


@dataclass(frozen=True)
class ProfileTemplate:
    """A PFX certificate profile: who the certificate names, its key type and CA template."""

    name: str
    subject: str
    san: Sequence[str] = ()
    key_type: KeyType = KeyType.RSA2048
    ca_template: str = "user-auth"
    _subject_fields: tuple[_Field, ...] = field(init=False, repr=False, compare=False)
    _san_fields: tuple[_Field, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "san", tuple(self.san))
        object.__setattr__(self, "key_type", KeyType.parse(str(self.key_type)))
        object.__setattr__(self, "_subject_fields", parse_subject_template(self.subject))
        object.__setattr__(self, "_san_fields", parse_san_templates(self.san))

    @property
    def variables(self) -> frozenset[str]:
        """The variables this profile uses."""
        used: set[str] = set()
        for f in (*self._subject_fields, *self._san_fields):
            used |= f.variables
        return frozenset(used)

    def render_subject(self, variables: Mapping[str, str]) -> x509.Name:
        attributes = []
        for f in self._subject_fields:
            assert isinstance(f.kind, ObjectIdentifier)
            try:
                attributes.append(x509.NameAttribute(f.kind, f.render(variables)))
            except ValueError as exc:
                if isinstance(exc, TemplateError):
                    raise
                raise TemplateError(f"{f.label}: {exc}") from exc
        if not any(a.oid == NameOID.SERIAL_NUMBER for a in attributes):
            attributes.append(x509.NameAttribute(NameOID.SERIAL_NUMBER, device_id_of(variables)))
        return x509.Name(attributes)

    def render_sans(self, variables: Mapping[str, str]) -> list[x509.GeneralName]:
        names: list[x509.GeneralName] = []
        for f in self._san_fields:
            assert isinstance(f.kind, str)
            name = _general_name(f.kind, f.label, f.render(variables))
            if name not in names:
                names.append(name)
        return names
