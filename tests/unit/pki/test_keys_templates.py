"""Key policy, profile templates and CSRs."""

from __future__ import annotations

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import dsa, ec, rsa
from cryptography.x509.oid import NameOID
from hypothesis import given
from hypothesis import strategies as st

from connector.pki import (
    KeyPolicyError,
    KeyType,
    ProfileTemplate,
    TemplateError,
    build_csr,
    check_key,
    generate_key,
    key_type_of,
    public_key_id,
)
from connector.pki.templates import UPN_OID

VARS = {
    "UserName": "alice",
    "UserPrincipalName": "alice@contoso.test",
    "EmailAddress": "alice@contoso.test",
    "DeviceId": "dev-1",
    "AAD_Device_ID": "aad-1",
}


@pytest.mark.parametrize("kt", [KeyType.RSA2048, KeyType.P256, KeyType.P384])
def test_generated_keys_have_their_type(kt: KeyType) -> None:
    assert key_type_of(generate_key(kt)) is kt


@pytest.mark.parametrize(
    ("text", "kt"),
    [
        ("RSA-2048", KeyType.RSA2048),
        ("rsa_4096", KeyType.RSA4096),
        ("P-256", KeyType.P256),
        ("ecdsa-p384", KeyType.P384),
        ("secp256r1", KeyType.P256),
    ],
)
def test_key_type_names_parse(text: str, kt: KeyType) -> None:
    assert KeyType.parse(text) is kt


def test_weak_and_unsupported_keys_are_refused() -> None:
    with pytest.raises(KeyPolicyError, match="at least 2048"):
        KeyType.parse("rsa1024")
    with pytest.raises(KeyPolicyError, match="unknown key type"):
        KeyType.parse("ed25519")
    with pytest.raises(KeyPolicyError, match="at least 2048"):
        check_key(rsa.generate_private_key(public_exponent=65537, key_size=1024))  # noqa: S505 - the weak key under test
    with pytest.raises(KeyPolicyError, match="not supported"):
        check_key(ec.generate_private_key(ec.SECP224R1()))
    with pytest.raises(KeyPolicyError, match="not supported"):
        check_key(dsa.generate_private_key(2048))  # type: ignore[arg-type]


def test_public_key_id_is_stable_and_secret_free() -> None:
    key = generate_key(KeyType.P256)
    assert public_key_id(key) == public_key_id(key.public_key())
    assert len(public_key_id(key)) == 64


def test_subject_and_sans_render_with_device_id_in_serial_number() -> None:
    profile = ProfileTemplate(
        "p",
        r"CN={{UserName}},OU=Sales\, EMEA,E={{EmailAddress}}",
        [
            "UPN={{UserPrincipalName}}",
            "email:{{EmailAddress}}",
            "URI=IntuneDeviceId://{{DeviceId}}",
            "DNS={{UserName}}.contoso.test",
        ],
    )
    assert profile.variables == {"UserName", "EmailAddress", "UserPrincipalName", "DeviceId"}
    key = generate_key(KeyType.P256)
    csr = build_csr(key, profile.subject, list(profile.san), VARS)
    assert csr.is_signature_valid
    subject = csr.subject
    assert subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "alice"
    assert (
        subject.get_attributes_for_oid(NameOID.ORGANIZATIONAL_UNIT_NAME)[0].value == "Sales, EMEA"
    )
    assert subject.get_attributes_for_oid(NameOID.SERIAL_NUMBER)[0].value == "dev-1"
    sans = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.UniformResourceIdentifier) == ["IntuneDeviceId://dev-1"]
    assert sans.get_values_for_type(x509.RFC822Name) == ["alice@contoso.test"]
    upn = sans.get_values_for_type(x509.OtherName)[0]
    assert upn.type_id == UPN_OID
    assert upn.value == b"\x0c\x12alice@contoso.test"


def test_aad_device_id_is_used_when_device_id_is_absent() -> None:
    name = ProfileTemplate("p", "CN={{UserName}}").render_subject(
        {"UserName": "u", "AAD_Device_ID": "aad-9"}
    )
    assert name.get_attributes_for_oid(NameOID.SERIAL_NUMBER)[0].value == "aad-9"


def test_an_explicit_serial_number_template_is_kept() -> None:
    name = ProfileTemplate("p", "CN=x,serialNumber={{AAD_Device_ID}}").render_subject(VARS)
    assert [a.value for a in name.get_attributes_for_oid(NameOID.SERIAL_NUMBER)] == ["aad-1"]


@pytest.mark.parametrize(
    ("subject", "sans", "message"),
    [
        ("CN={{UserNmae}}", [], "unknown variable"),
        ("CN={{UserName}", [], "unbalanced"),
        ("CN=}}x", [], "unbalanced"),
        ("CN", [], "ATTRIBUTE=value"),
        ("CN=a,,O=b", [], "ATTRIBUTE=value"),
        ("XX=a", [], "unknown attribute"),
        ("", [], "empty"),
        ("CN=a", ["IP=1.2.3.4"], "unknown type"),
        ("CN=a", ["UPN="], "TYPE=value"),
        ("CN=a", ["URI=IntuneDeviceId://{{Device}}"], "unknown variable"),
    ],
)
def test_malformed_templates_fail_when_the_profile_is_built(
    subject: str, sans: list[str], message: str
) -> None:
    with pytest.raises(TemplateError, match=message):
        ProfileTemplate("p", subject, sans)


@pytest.mark.parametrize(
    ("variables", "message"),
    [
        ({"DeviceId": "d"}, "UserName.*no value"),
        ({"UserName": "u", "EmailAddress": "a@b"}, "device id"),
    ],
)
def test_missing_subject_values_fail_at_render(variables: dict[str, str], message: str) -> None:
    with pytest.raises(TemplateError, match=message):
        ProfileTemplate("p", "CN={{UserName}}").render_subject(variables)


@pytest.mark.parametrize(
    ("value", "message"), [("", "EmailAddress.*no value"), ("not-an-email", "email")]
)
def test_missing_or_bad_san_values_fail_at_render(value: str, message: str) -> None:
    profile = ProfileTemplate("p", "CN=x", ["email={{EmailAddress}}"])
    with pytest.raises(TemplateError, match=message):
        profile.render_sans({"EmailAddress": value})


def test_country_must_be_two_letters() -> None:
    with pytest.raises(TemplateError, match="C"):
        ProfileTemplate("p", "CN=a,C=Germany").render_subject(VARS)


@given(
    st.text(min_size=1, max_size=16).filter(
        lambda s: s.strip() == s and "{" not in s and "}" not in s and "\x00" not in s
    )
)
def test_variable_values_cannot_change_the_structure(value: str) -> None:
    # Commas, equals signs and plus signs inside a value stay inside that attribute.
    name = ProfileTemplate("p", "CN={{UserName}},O=Contoso").render_subject(
        {"UserName": value, "DeviceId": "d"}
    )
    assert name.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == value
    assert name.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value == "Contoso"
    assert len(list(name)) == 3
