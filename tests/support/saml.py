"""A SAML identity provider made in the test: its key and certificate, assertions and responses
signed with signxml, and the settings that trust it."""

from __future__ import annotations

import base64
import copy
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from lxml import etree
from signxml.algorithms import SignatureConstructionMethod
from signxml.signer import XMLSigner

from jobengine.access.saml import SamlConfig, SamlError, verify_saml

ENTITY = "https://idp.example.org/saml"


AUDIENCE = "https://jobengine.example.com/sp"


SAML = "urn:oasis:names:tc:SAML:2.0:assertion"


SAMLP = "urn:oasis:names:tc:SAML:2.0:protocol"


DS = "http://www.w3.org/2000/09/xmldsig#"


EXC_C14N = "http://www.w3.org/2001/10/xml-exc-c14n#"


SUCCESS = "urn:oasis:names:tc:SAML:2.0:status:Success"


@dataclass(frozen=True)
class Idp:
    key: rsa.RSAPrivateKey
    cert: x509.Certificate

    @property
    def cert_pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)


def make_idp(name: str, *, valid_days: int = 365, started_days_ago: int = 1) -> Idp:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    start = datetime.now(UTC) - timedelta(days=started_days_ago)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + timedelta(days=valid_days))
        .sign(key, hashes.SHA256())
    )
    return Idp(key, cert)


ENDPOINT = "https://ips.example.com/scene7/services/IpsApiService"


def config_for(*idps: Idp, skew: float = 120, max_validity: float = 600) -> SamlConfig:
    return SamlConfig(tuple(i.cert for i in idps), ENTITY, AUDIENCE, skew, max_validity,
                      (ENDPOINT,))  # fmt: skip


def stamp(seconds: float) -> str:
    """Now plus ``seconds``, as SAML writes times."""
    moment = datetime.now(UTC) + timedelta(seconds=seconds)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def assertion(
    name_id: str,
    *,
    issuer: str = ENTITY,
    audience: str = AUDIENCE,
    not_before: float = -60,
    not_after: float = 300,
    bearer_after: float | None = 300,
    method: str = "urn:oasis:names:tc:SAML:2.0:cm:bearer",
    assertion_id: str | None = None,
    placeholder: bool = True,
    issued: float = 0,
    recipient: str | None = None,
    in_response_to: str | None = None,
) -> Any:
    """A ``saml:Assertion`` element (unsigned; with a signature placeholder after Issuer)."""
    aid = assertion_id or f"_a{uuid.uuid4().hex}"
    addressed = "" if recipient is None else f' Recipient="{recipient}"'
    addressed += "" if in_response_to is None else f' InResponseTo="{in_response_to}"'
    data = (
        f'<saml:SubjectConfirmationData NotOnOrAfter="{stamp(bearer_after)}"{addressed}/>'
        if bearer_after is not None
        else ""
    )
    sig = f'<ds:Signature xmlns:ds="{DS}" Id="placeholder"/>' if placeholder else ""
    text = f"""<saml:Assertion xmlns:saml="{SAML}" ID="{aid}" Version="2.0"
        IssueInstant="{stamp(issued)}"><saml:Issuer>{issuer}</saml:Issuer>{sig}
      <saml:Subject>
        <saml:NameID Format="urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress"
          >{name_id}</saml:NameID>
        <saml:SubjectConfirmation Method="{method}">{data}</saml:SubjectConfirmation>
      </saml:Subject>
      <saml:Conditions NotBefore="{stamp(not_before)}" NotOnOrAfter="{stamp(not_after)}">
        <saml:AudienceRestriction><saml:Audience>{audience}</saml:Audience>
        </saml:AudienceRestriction>
      </saml:Conditions>
      <saml:AuthnStatement AuthnInstant="{stamp(0)}" SessionNotOnOrAfter="{stamp(3600)}">
        <saml:AuthnContext><saml:AuthnContextClassRef
          >urn:oasis:names:tc:SAML:2.0:ac:classes:PasswordProtectedTransport</saml:AuthnContextClassRef>
        </saml:AuthnContext>
      </saml:AuthnStatement>
    </saml:Assertion>"""
    return etree.fromstring(text)


def response(
    *assertions: Any,
    status: str = SUCCESS,
    issuer: str = ENTITY,
    placeholder: bool = False,
    attributes: str = "",
) -> Any:
    """A ``samlp:Response`` holding ``assertions`` (copies)."""
    sig = f'<ds:Signature xmlns:ds="{DS}" Id="placeholder"/>' if placeholder else ""
    text = f"""<samlp:Response xmlns:samlp="{SAMLP}" xmlns:saml="{SAML}" {attributes}
        ID="_r{uuid.uuid4().hex}" Version="2.0" IssueInstant="{stamp(0)}"
        ><saml:Issuer>{issuer}</saml:Issuer>{sig}
      <samlp:Status><samlp:StatusCode Value="{status}"/></samlp:Status></samlp:Response>"""
    root = etree.fromstring(text)
    for item in assertions:
        root.append(copy.deepcopy(item))
    return root


def sign(element: Any, signer: Idp, *, c14n: str = EXC_C14N) -> Any:
    """``element`` with an enveloped RSA-SHA256 signature referencing its ID."""
    return XMLSigner(
        method=SignatureConstructionMethod.enveloped,
        signature_algorithm="rsa-sha256",
        digest_algorithm="sha256",
        c14n_algorithm=c14n,
    ).sign(
        element,
        key=signer.key,
        cert=[signer.cert],
        reference_uri=f"#{element.get('ID')}",
        id_attribute="ID",
    )


def encode(element: Any) -> str:
    return base64.b64encode(etree.tostring(element)).decode()


def signed_response(signer: Idp, name_id: str = "ann@example.com", **kwargs: Any) -> str:
    """The usual shape: a Response whose Assertion is signed."""
    return encode(response(sign(assertion(name_id, **kwargs), signer)))


def refused(text: str, config: SamlConfig) -> str:
    with pytest.raises(SamlError) as caught:
        verify_saml(text, config)
    return caught.value.reason
