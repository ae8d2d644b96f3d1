"""SAML 2.0 sign-on: the checks of a ``samlResponse`` that an identity provider (IdP) signed.

:func:`verify_saml` takes the base64 text of the SOAP ``authHeader/samlResponse`` (a
``<samlp:Response>`` or a bare ``<saml:Assertion>``) and returns the :class:`SamlIdentity` it
asserts, or raises :class:`SamlError` with a reason fit for the caller (details of a failed
signature go to the log, not to the caller). :func:`jobengine.access.auth.authenticate_saml` turns
the identity into a caller. The checks, in order:

1. **Size.** At most :data:`MAX_ENCODED_CHARS` of base64 text and :data:`MAX_XML_BYTES` of XML.
2. **Hostile XML.** The XML must be UTF-8 and have no DOCTYPE (refused before parsing); the
   parser resolves no entity, loads no DTD and never touches the network; a DTD or entity that
   got through anyway is refused after parsing.
3. **Signature** (signxml ``XMLVerifier``), against one of the configured IdP certificates
   (``x509_cert``; signxml also refuses a certificate outside its validity period and SHA-1).
   The signature must be a direct child of the element it signs, and its one reference must be
   that element's ``ID`` (or ``""`` for the document). A Response with a signature must verify,
   and then its assertion is taken from the signed Response; otherwise the Response's one
   Assertion must carry a signature that verifies. Only the element signxml returns as signed is
   read from then on: a second (unsigned) assertion, or a signed assertion moved elsewhere,
   cannot change what is read (signature wrapping). An unsigned Response's ``Status`` is read only
   to refuse it.
4. **Response.** ``samlp:Status`` is ``Success``; its Issuer, when present, is the IdP's;
   exactly one Assertion, not encrypted.
   A Response's ``Destination``, when present, is this service's SOAP endpoint
   (:attr:`SamlConfig.recipients`, from ``JOBENGINE_PUBLIC_URL``); a present ``InResponseTo`` is
   refused: this service sends no AuthnRequest, so nothing of ours can be answered.
5. **Assertion.** Version 2.0 with an ``ID``; Issuer equals ``JOBENGINE_SAML_IDP_ENTITY_ID``;
   ``IssueInstant`` (required) is neither in the future nor more than
   :attr:`SamlConfig.max_validity` seconds ago (``JOBENGINE_SAML_MAX_VALIDITY``: an assertion
   claiming to be valid for 30 years is good for that long at most); ``Conditions``
   ``NotBefore`` / ``NotOnOrAfter`` hold now, give or take the clock skew; every
   ``AudienceRestriction`` (at least one is required) names ``JOBENGINE_SAML_AUDIENCE``; a
   ``SubjectConfirmation`` of method bearer whose ``SubjectConfirmationData`` ``NotOnOrAfter``
   (required) and ``NotBefore`` (if any) hold, whose ``Recipient``, when present, is this
   service's endpoint and which has no ``InResponseTo``; an AuthnStatement's
   ``SessionNotOnOrAfter``, if any, has not passed; the Subject has a non-empty ``NameID``.

A condition other than AudienceRestriction, OneTimeUse and ProxyRestriction is refused (SAML
core 2.5.1: not understood, so not valid). Replay is refused by the caller
(:func:`jobengine.access.auth.authenticate_saml`, :mod:`jobengine.access.replay`): every assertion
ID is accepted once, and remembered until :attr:`SamlIdentity.not_on_or_after`.
"""

from __future__ import annotations

import base64
import binascii
import functools
import logging
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography import x509
from lxml import etree
from signxml.verifier import SignatureConfiguration, XMLVerifier

from jobengine.errors import ConfigurationError

__all__ = [
    "ASSERTION_NS",
    "MAX_ENCODED_CHARS",
    "MAX_XML_BYTES",
    "PROTOCOL_NS",
    "SamlConfig",
    "SamlError",
    "SamlIdentity",
    "load_certificates",
    "parse_message",
    "verify_saml",
]

logger = logging.getLogger(__name__)

ASSERTION_NS = "urn:oasis:names:tc:SAML:2.0:assertion"
PROTOCOL_NS = "urn:oasis:names:tc:SAML:2.0:protocol"
DSIG_NS = "http://www.w3.org/2000/09/xmldsig#"
SUCCESS = "urn:oasis:names:tc:SAML:2.0:status:Success"
BEARER = "urn:oasis:names:tc:SAML:2.0:cm:bearer"

MAX_ENCODED_CHARS = 256 * 1024  # base64 text of samlResponse, whitespace included
MAX_XML_BYTES = 128 * 1024  # the decoded XML
_MAX_NAME_ID = 320  # longer names cannot be a user's e-mail

_RESPONSE = f"{{{PROTOCOL_NS}}}Response"
_ASSERTION = f"{{{ASSERTION_NS}}}Assertion"
_ENCRYPTED_ASSERTION = f"{{{ASSERTION_NS}}}EncryptedAssertion"
_SIGNATURE = f"{{{DSIG_NS}}}Signature"
# SAML core 2.5.1: a condition not understood makes the assertion invalid. OneTimeUse is
# understood (every assertion is used once: jobengine.access.replay); ProxyRestriction does not
# concern us.
_KNOWN_CONDITIONS = frozenset(
    f"{{{ASSERTION_NS}}}{name}"
    for name in ("AudienceRestriction", "OneTimeUse", "ProxyRestriction")
)

# xsd:dateTime (SAML times are UTC, but any offset is read correctly; none means UTC)
_DATETIME = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?(Z|[+-]\d{2}:\d{2})?"
)
_WHITESPACE = re.compile(rb"[ \t\r\n]+")


class SamlError(Exception):
    """Raised when a samlResponse is refused; ``reason`` says why, without secrets."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


@dataclass(frozen=True)
class SamlConfig:
    """What a samlResponse is checked against (from the JOBENGINE_SAML_* settings)."""

    certificates: tuple[x509.Certificate, ...]
    entity_id: str
    audience: str
    clock_skew: float = 120.0
    max_validity: float = 600.0  # seconds after IssueInstant an assertion is accepted
    # URLs a present Recipient or Destination may name (this service's SOAP endpoint); none:
    # a present one is refused, since it cannot be told to be ours
    recipients: tuple[str, ...] = ()


@dataclass(frozen=True)
class SamlIdentity:
    """Who a verified assertion names, and what it says about the name."""

    name_id: str
    name_id_format: str | None
    issuer: str
    assertion_id: str
    not_on_or_after: datetime  # the earliest end: conditions, confirmation, max validity


def load_certificates(path: str | Path) -> tuple[x509.Certificate, ...]:
    """The X.509 certificates of a PEM file (read again when the file changes).

    ConfigurationError when the file cannot be read or holds no certificate.
    """
    file = Path(path)
    try:
        stat = file.stat()
    except OSError as exc:
        raise ConfigurationError(f"JOBENGINE_SAML_IDP_CERT {file}: {exc.strerror}") from exc
    return _read_certificates(str(file), stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=8)
def _read_certificates(path: str, mtime_ns: int, size: int) -> tuple[x509.Certificate, ...]:
    del mtime_ns, size  # the cache key: a changed file is read again
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise ConfigurationError(f"JOBENGINE_SAML_IDP_CERT {path}: {exc.strerror}") from exc
    try:
        certificates = tuple(x509.load_pem_x509_certificates(data))
    except ValueError as exc:
        raise ConfigurationError(
            f"JOBENGINE_SAML_IDP_CERT {path} holds no PEM X.509 certificate: {exc}"
        ) from exc
    return certificates


def _parser() -> etree.XMLParser:
    """A parser that expands no entity, loads no DTD and reads nothing from the network."""
    return etree.XMLParser(
        encoding="utf-8",
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        dtd_validation=False,
        huge_tree=False,
    )


def _decode(text: str) -> bytes:
    """The XML bytes of the base64 text (line breaks and spaces allowed), size-capped."""
    if len(text) > MAX_ENCODED_CHARS:
        raise SamlError(f"the SAML response is over {MAX_ENCODED_CHARS} characters")
    try:
        compact = _WHITESPACE.sub(b"", text.encode("ascii"))
        data = base64.b64decode(compact, validate=True)
    except (UnicodeEncodeError, binascii.Error):
        raise SamlError("the SAML response is not base64") from None
    if not data:
        raise SamlError("the SAML response is empty")
    if len(data) > MAX_XML_BYTES:
        raise SamlError(f"the SAML response is over {MAX_XML_BYTES} bytes of XML")
    return data


def _parse(data: bytes) -> Any:
    """The root element of the hardened parse; SamlError for anything else than plain XML."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise SamlError("the SAML response is not UTF-8 XML") from None
    if "<!DOCTYPE" in text or "<!ENTITY" in text:
        raise SamlError("the SAML response may not have a DOCTYPE or entities")
    try:
        root = etree.fromstring(data, parser=_parser())
    except etree.XMLSyntaxError:
        raise SamlError("the SAML response is not well-formed XML") from None
    info = root.getroottree().docinfo
    if info.internalDTD is not None or info.externalDTD is not None or info.doctype:
        raise SamlError("the SAML response may not have a DOCTYPE or entities")
    if any(True for _ in root.iter(etree.Entity)):
        raise SamlError("the SAML response may not have a DOCTYPE or entities")
    return root


def _children(element: Any, tag: str) -> list[Any]:
    return [child for child in element if child.tag == tag]


def _child(element: Any, tag: str) -> Any | None:
    found = _children(element, tag)
    if len(found) > 1:
        raise SamlError(f"the SAML message has more than one {_local(tag)}")
    return found[0] if found else None


def _local(tag: str) -> str:
    return tag.rpartition("}")[2]


def _text(element: Any) -> str:
    """The text of a simple-content element (comments ignored); SamlError if it has children."""
    if any(isinstance(child.tag, str) for child in element):
        raise SamlError(f"the SAML element {_local(element.tag)} must hold text only")
    return "".join(element.itertext()).strip()


def _time(element: Any, attribute: str) -> datetime | None:
    raw = element.get(attribute)
    if raw is None:
        return None
    match = _DATETIME.fullmatch(raw.strip())
    if match is None:
        raise SamlError(f"the SAML attribute {attribute} is not a dateTime")
    year, month, day, hour, minute, second = (int(g) for g in match.groups()[:6])
    fraction, zone = match.group(7), match.group(8)
    try:
        value = datetime(year, month, day, hour, minute, second,
                         int((fraction or "0")[:6].ljust(6, "0")), tzinfo=UTC)  # fmt: skip
    except ValueError:
        raise SamlError(f"the SAML attribute {attribute} is not a dateTime") from None
    if zone and zone != "Z":
        sign = -1 if zone[0] == "-" else 1
        value -= sign * timedelta(hours=int(zone[1:3]), minutes=int(zone[4:6]))
    return value


def _verify(element: Any, config: SamlConfig) -> Any:
    """The element as signed, if its own enveloped signature verifies with a configured cert.

    The signature must be a direct child of ``element`` and reference exactly ``element`` (by its
    ID, or ``""``); the answer is signxml's signed copy, the only one read afterwards.
    """
    if not _children(element, _SIGNATURE):
        raise SamlError(f"the SAML {_local(element.tag)} is not signed")
    element_id = element.get("ID")
    expect = SignatureConfiguration(location="./", expect_references=1)
    failures: list[str] = []
    for certificate in config.certificates:
        try:
            result: Any = XMLVerifier().verify(
                element,
                x509_cert=certificate,
                parser=_parser(),
                id_attribute="ID",
                expect_config=expect,
            )
        except Exception as exc:  # any refusal of untrusted input by signxml or lxml
            failures.append(f"{type(exc).__name__}: {exc}")
            continue
        signed = result.signed_xml
        references = result.signature_xml.findall(f"{{{DSIG_NS}}}SignedInfo/{{{DSIG_NS}}}Reference")
        uri = references[0].get("URI") if len(references) == 1 else None
        covered = uri == "" or (bool(element_id) and uri == f"#{element_id}")
        if (
            not covered
            or signed is None
            or signed.tag != element.tag
            or (uri and signed.get("ID") != element_id)
        ):
            raise SamlError(f"the signature of the SAML {_local(element.tag)} does not cover it")
        return signed
    logger.info("SAML signature refused: %s", "; ".join(failures)[:2000])
    raise SamlError("the SAML signature does not verify with the identity provider's certificate")


def _assertion_of(root: Any, config: SamlConfig) -> Any:
    """The signed assertion of a Response or a bare Assertion (signature rules of step 3/4)."""
    if root.tag == _ASSERTION:
        return _verify(root, config)
    if root.tag != _RESPONSE:
        raise SamlError("the SAML message is neither a samlp:Response nor a saml:Assertion")
    _check_response(root, config)  # unsigned: read only to refuse
    if _children(root, _SIGNATURE):
        response = _verify(root, config)
        _check_response(response, config)
        [assertion] = _assertions(response)
        return assertion
    [assertion] = _assertions(root)
    return _verify(assertion, config)


def _assertions(response: Any) -> list[Any]:
    if _children(response, _ENCRYPTED_ASSERTION):
        raise SamlError("encrypted SAML assertions are not supported")
    assertions = _children(response, _ASSERTION)
    if len(assertions) != 1:
        raise SamlError(f"the SAML response holds {len(assertions)} assertions; expected one")
    return assertions


def _same_url(a: str, b: str) -> bool:
    """URLs compared as a browser would (scheme and host without case, no trailing slash)."""

    def norm(url: str) -> tuple[str, str, str]:
        scheme, _, rest = url.strip().partition("://")
        host, _, path = rest.partition("/")
        return scheme.lower(), host.lower(), path.rstrip("/")

    return norm(a) == norm(b)


def _check_addressed(element: Any, attribute: str, config: SamlConfig) -> None:
    """A present ``Recipient``/``Destination`` must be this service's endpoint, and there must
    be no ``InResponseTo`` (this service sends no AuthnRequest)."""
    where = _local(element.tag)
    if element.get("InResponseTo") is not None:
        raise SamlError(f"the SAML {where} answers a request this service did not make")
    named = element.get(attribute)
    if named is None:
        return
    if not any(_same_url(named, ours) for ours in config.recipients):
        hint = "" if config.recipients else " (set JOBENGINE_PUBLIC_URL)"
        raise SamlError(f"the SAML {where} {attribute} is not this service's endpoint{hint}")


def _check_response(response: Any, config: SamlConfig) -> None:
    _check_addressed(response, "Destination", config)
    status = _child(response, f"{{{PROTOCOL_NS}}}Status")
    code = None if status is None else _child(status, f"{{{PROTOCOL_NS}}}StatusCode")
    value = None if code is None else code.get("Value")
    if value != SUCCESS:
        shown = value.rpartition(":")[2][:64] if value else "missing"
        raise SamlError(f"the SAML response status is {shown}, not Success")
    issuer = _child(response, f"{{{ASSERTION_NS}}}Issuer")
    if issuer is not None and _text(issuer) != config.entity_id:
        raise SamlError("the SAML response is not from the configured identity provider")
    _assertions(response)


def _check_window(
    element: Any, now: datetime, skew: timedelta, what: str, *, need_end: bool = False
) -> datetime | None:
    not_before = _time(element, "NotBefore")
    not_after = _time(element, "NotOnOrAfter")
    if not_before is not None and now + skew < not_before:
        raise SamlError(f"the SAML {what} is not valid yet")
    if not_after is None:
        if need_end:
            raise SamlError(f"the SAML {what} has no NotOnOrAfter")
        return None
    if now - skew >= not_after:
        raise SamlError(f"the SAML {what} has expired")
    return not_after


def _check_conditions(assertion: Any, config: SamlConfig, now: datetime) -> datetime | None:
    skew = timedelta(seconds=config.clock_skew)
    conditions = _child(assertion, f"{{{ASSERTION_NS}}}Conditions")
    if conditions is None:
        raise SamlError("the SAML assertion has no Conditions (an audience is required)")
    ends = _check_window(conditions, now, skew, "assertion")
    for condition in conditions:
        if isinstance(condition.tag, str) and condition.tag not in _KNOWN_CONDITIONS:
            raise SamlError(f"the SAML assertion has a condition not understood here "
                            f"({_local(condition.tag)[:64]})")  # fmt: skip
    restrictions = _children(conditions, f"{{{ASSERTION_NS}}}AudienceRestriction")
    if not restrictions:
        raise SamlError("the SAML assertion has no AudienceRestriction")
    for restriction in restrictions:
        audiences = {_text(a) for a in _children(restriction, f"{{{ASSERTION_NS}}}Audience")}
        if config.audience not in audiences:
            raise SamlError("the SAML assertion is not meant for this service (audience)")
    return ends


def _check_subject(assertion: Any, config: SamlConfig, now: datetime) -> tuple[Any, datetime]:
    """The NameID and the end of the first valid bearer confirmation."""
    subject = _child(assertion, f"{{{ASSERTION_NS}}}Subject")
    if subject is None:
        raise SamlError("the SAML assertion has no Subject")
    name_id = _child(subject, f"{{{ASSERTION_NS}}}NameID")
    if name_id is None:
        raise SamlError("the SAML subject has no NameID (encrypted IDs are not supported)")
    reasons: list[str] = []
    for confirmation in _children(subject, f"{{{ASSERTION_NS}}}SubjectConfirmation"):
        if confirmation.get("Method") != BEARER:
            continue
        data = _child(confirmation, f"{{{ASSERTION_NS}}}SubjectConfirmationData")
        if data is None:
            reasons.append("the SAML bearer confirmation has no SubjectConfirmationData")
            continue
        skew = timedelta(seconds=config.clock_skew)
        try:
            ends = _check_window(data, now, skew, "subject confirmation", need_end=True)
            _check_addressed(data, "Recipient", config)
        except SamlError as exc:
            reasons.append(exc.reason)
            continue
        assert ends is not None
        return name_id, ends
    raise SamlError(reasons[0] if reasons else "the SAML subject has no bearer confirmation")


def _check_issued(assertion: Any, config: SamlConfig, now: datetime) -> datetime:
    """The end of the assertion's accepted validity: IssueInstant plus the cap."""
    issued = _time(assertion, "IssueInstant")
    if issued is None:
        raise SamlError("the SAML assertion has no IssueInstant")
    skew = timedelta(seconds=config.clock_skew)
    if issued > now + skew:
        raise SamlError("the SAML assertion is issued in the future")
    cap = issued + timedelta(seconds=config.max_validity)
    if now - skew >= cap:
        raise SamlError(
            f"the SAML assertion was issued more than {config.max_validity:g} s ago "
            "(JOBENGINE_SAML_MAX_VALIDITY)"
        )
    return cap


def _check_assertion(assertion: Any, config: SamlConfig, now: datetime) -> SamlIdentity:
    if assertion.get("Version") != "2.0":
        raise SamlError("the SAML assertion is not version 2.0")
    assertion_id = assertion.get("ID") or ""
    if not assertion_id or len(assertion_id) > 256:
        raise SamlError("the SAML assertion has no usable ID")
    issuer = _child(assertion, f"{{{ASSERTION_NS}}}Issuer")
    if issuer is None or _text(issuer) != config.entity_id:
        raise SamlError("the SAML assertion is not from the configured identity provider")
    skew = timedelta(seconds=config.clock_skew)
    capped = _check_issued(assertion, config, now)
    ends = _check_conditions(assertion, config, now)
    name_id, confirmed_until = _check_subject(assertion, config, now)
    for statement in _children(assertion, f"{{{ASSERTION_NS}}}AuthnStatement"):
        session_end = _time(statement, "SessionNotOnOrAfter")
        if session_end is not None and now - skew >= session_end:
            raise SamlError("the SAML session has expired")
    name = _text(name_id)
    if not name or len(name) > _MAX_NAME_ID:
        raise SamlError("the SAML NameID is empty or too long")
    return SamlIdentity(
        name_id=name,
        name_id_format=name_id.get("Format"),
        issuer=config.entity_id,
        assertion_id=assertion_id,
        not_on_or_after=min(d for d in (ends, confirmed_until, capped) if d is not None),
    )


def parse_message(text: str) -> Any:
    """The root element of a base64 samlResponse after the size and hostile-XML checks (steps 1
    and 2), nothing verified yet; SamlError otherwise."""
    return _parse(_decode(text))


def verify_saml(text: str, config: SamlConfig, *, now: datetime | None = None) -> SamlIdentity:
    """The identity a base64 samlResponse asserts, after every check; SamlError otherwise."""
    if not config.certificates:
        raise SamlError("SAML sign-on is not configured on this server")
    root = _parse(_decode(text))
    assertion = _assertion_of(root, config)
    return _check_assertion(assertion, config, now or datetime.now(UTC))
