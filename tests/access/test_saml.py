"""SAML 2.0 sign-on, accessToken and gzipResponse of the SOAP ``authHeader``.

* :mod:`jobengine.access.saml` on assertions signed here with signxml by an identity provider whose
  key and certificate are made in the test (``cryptography``): the valid shapes and every refusal
  (wrong certificate, tampering, signature wrapping, time limits, audience, issuer, status,
  hostile XML, size, encoding, no signature).
* :func:`jobengine.access.auth.authenticate_saml` on a real store (SQLite and PostgreSQL) and the
real
  failed-login limiter (Redis).
* End to end through a real ``jobengine serve`` process started with the SAML settings in its
  environment: samlResponse, accessToken and their order, gzipResponse on answers and faults
  (raw HTTP and zeep).
"""

from __future__ import annotations

import base64
import copy
import gzip
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from lxml import etree
from signxml.signer import XMLSigner

from jobengine.access import auth
from jobengine.access.auth import authenticate, authenticate_saml, create_token
from jobengine.access.saml import (
    MAX_ENCODED_CHARS,
    MAX_XML_BYTES,
    SamlConfig,
    load_certificates,
    verify_saml,
)
from jobengine.errors import ConfigurationError, IpsFault, TooManyAttempts
from jobengine.model.ipsxml import IPS_NAMESPACE
from jobengine.settings import Settings, reset_settings
from jobengine.web.soap import handle_soap
from tests.support.helpers import PASSWORD, make_company
from tests.support.saml import (
    AUDIENCE,
    DS,
    ENTITY,
    EXC_C14N,
    SAML,
    SAMLP,
    Idp,
    assertion,
    config_for,
    encode,
    make_idp,
    refused,
    response,
    sign,
    signed_response,
    stamp,
)
from tests.support.web import SERVICE, WebServer, body_child, envelope, parse_fault, texts

# --- an identity provider made here -------------------------------------------------------------


@pytest.fixture(scope="module")
def idp() -> Idp:
    return make_idp("Test IdP")


@pytest.fixture(scope="module")
def rogue() -> Idp:
    """Another key pair: a valid signature, but not by the configured IdP."""
    return make_idp("Rogue IdP")


# --- jobengine.access.saml: what is accepted ------------------------------------------------------


def test_signed_assertion_in_a_response(idp: Idp) -> None:
    identity = verify_saml(signed_response(idp), config_for(idp))
    assert identity.name_id == "ann@example.com"
    assert identity.issuer == ENTITY
    assert identity.name_id_format == "urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress"
    assert identity.not_on_or_after > datetime.now(UTC)


def test_signed_response_with_an_unsigned_assertion(idp: Idp) -> None:
    root = response(assertion("bob@example.com", placeholder=False), placeholder=True)
    identity = verify_saml(encode(sign(root, idp)), config_for(idp))
    assert identity.name_id == "bob@example.com"


def test_signed_response_with_a_signed_assertion(idp: Idp) -> None:
    root = response(sign(assertion("cy@example.com"), idp), placeholder=True)
    assert verify_saml(encode(sign(root, idp)), config_for(idp)).name_id == "cy@example.com"


def test_bare_signed_assertion_with_line_breaks_in_the_base64(idp: Idp) -> None:
    text = encode(sign(assertion("dee@example.com"), idp))
    wrapped = "\n".join(text[i : i + 76] for i in range(0, len(text), 76))
    assert verify_saml(f"  {wrapped}\r\n", config_for(idp)).name_id == "dee@example.com"


def test_any_configured_certificate_verifies(idp: Idp, rogue: Idp) -> None:
    """Key rollover: the file may hold the old and the new certificate."""
    assert verify_saml(signed_response(idp), config_for(rogue, idp)).name_id == "ann@example.com"


def test_inclusive_c14n_assertion_signed_in_its_response(idp: Idp) -> None:
    """Inclusive C14N 1.1, the assertion signed in place (its namespace context included)."""
    root = response(assertion("eve@example.com"))
    reference = f"#{root.find(f'{{{SAML}}}Assertion').get('ID')}"
    signed = XMLSigner(c14n_algorithm="http://www.w3.org/2006/12/xml-c14n11").sign(
        root, key=idp.key, cert=[idp.cert], reference_uri=reference, id_attribute="ID"
    )
    assert signed.find(f"{{{SAML}}}Assertion/{{{DS}}}Signature") is not None
    assert verify_saml(encode(signed), config_for(idp)).name_id == "eve@example.com"


def test_times_within_the_clock_skew_pass(idp: Idp) -> None:
    text = signed_response(idp, not_before=60, not_after=-60, bearer_after=-60)
    assert verify_saml(text, config_for(idp, skew=120)).name_id == "ann@example.com"
    assert "not valid yet" in refused(text, config_for(idp, skew=0))


def test_a_comment_cannot_truncate_the_name_id(idp: Idp) -> None:
    """CVE-2017-11427 and kin: the whole signed text is the name, comment or not."""
    text = signed_response(idp, name_id="ann@example.com<!---->.evil.example")
    assert verify_saml(text, config_for(idp)).name_id == "ann@example.com.evil.example"


# --- jobengine.access.saml: what is refused -------------------------------------------------------


def test_signed_by_another_key(idp: Idp, rogue: Idp) -> None:
    reason = refused(signed_response(rogue), config_for(idp))
    assert reason == "the SAML signature does not verify with the identity provider's certificate"


def test_tampered_after_signing(idp: Idp) -> None:
    signed = sign(assertion("ann@example.com"), idp)
    signed.find(f".//{{{SAML}}}NameID").text = "admin@example.com"
    assert "does not verify" in refused(encode(response(signed)), config_for(idp))
    # a changed audience or time limit is a changed digest just the same
    signed = sign(assertion("ann@example.com", not_after=-3600), idp)
    signed.find(f"{{{SAML}}}Conditions").set("NotOnOrAfter", stamp(3600))
    assert "does not verify" in refused(encode(response(signed)), config_for(idp))


@pytest.mark.parametrize("where", ["before", "after"])
def test_a_second_unsigned_assertion_is_refused(idp: Idp, where: str) -> None:
    signed = sign(assertion("ann@example.com"), idp)
    evil = assertion("admin@example.com", placeholder=False)
    pair = (evil, signed) if where == "before" else (signed, evil)
    assert "holds 2 assertions" in refused(encode(response(*pair)), config_for(idp))


def without_signature(signed: Any) -> Any:
    """A copy of ``signed`` exactly as it was digested: its own Signature cut out, tail kept."""
    unsigned = copy.deepcopy(signed)
    signature = unsigned.find(f"{{{DS}}}Signature")
    previous = signature.getprevious()
    if previous is not None:
        previous.tail = (previous.tail or "") + (signature.tail or "")
    else:
        unsigned.text = (unsigned.text or "") + (signature.tail or "")
    unsigned.remove(signature)
    return unsigned


# The two refusals of a wrapped signature: it verifies, but on an element hidden elsewhere (the
# reference is not the ID of the element holding the signature), or the ID is ambiguous.
NOT_COVERED = "the signature of the SAML {} does not cover it"
NOT_VERIFIED = "the SAML signature does not verify with the identity provider's certificate"


def test_wrapped_assertion_with_the_signature_moved_is_refused(idp: Idp) -> None:
    """XSW: an evil assertion carries the original signature, the original hides inside it."""
    signed = sign(assertion("ann@example.com"), idp)
    for same_id, expected in ((False, NOT_COVERED.format("Assertion")), (True, NOT_VERIFIED)):
        evil = assertion(
            "admin@example.com",
            placeholder=False,
            assertion_id=signed.get("ID") if same_id else None,
        )
        evil.insert(1, copy.deepcopy(signed.find(f"{{{DS}}}Signature")))
        etree.SubElement(evil, f"{{{SAML}}}Advice").append(without_signature(signed))
        assert refused(encode(response(evil)), config_for(idp)) == expected


def test_wrapped_response_is_refused(idp: Idp) -> None:
    """XSW on the Response: a new root with the old signature, the signed one in Extensions."""
    signed = sign(response(assertion("ann@example.com", placeholder=False), placeholder=True), idp)
    for same_id, expected in ((False, NOT_COVERED.format("Response")), (True, NOT_VERIFIED)):
        evil = response(assertion("admin@example.com", placeholder=False))
        if same_id:
            evil.set("ID", signed.get("ID"))
        evil.insert(1, copy.deepcopy(signed.find(f"{{{DS}}}Signature")))
        extensions = etree.Element(f"{{{SAMLP}}}Extensions")
        extensions.append(without_signature(signed))
        evil.insert(2, extensions)
        assert refused(encode(evil), config_for(idp)) == expected


def test_a_signature_referencing_another_element_is_refused(idp: Idp) -> None:
    """A Response signature that covers only its Status does not vouch for the assertion."""
    root = response(assertion("admin@example.com", placeholder=False), placeholder=True)
    status = root.find(f"{{{SAMLP}}}Status")
    status.set("ID", "_status")
    signed = XMLSigner(c14n_algorithm=EXC_C14N).sign(
        root, key=idp.key, cert=[idp.cert], reference_uri="#_status", id_attribute="ID"
    )
    assert "does not cover it" in refused(encode(signed), config_for(idp))


def test_expired_and_not_yet_valid(idp: Idp) -> None:
    config = config_for(idp)
    assert "assertion has expired" in refused(signed_response(idp, not_after=-600), config)
    assert "not valid yet" in refused(signed_response(idp, not_before=600), config)
    late = signed_response(idp, bearer_after=-600)
    assert "subject confirmation has expired" in refused(late, config)


def test_bearer_confirmation_is_required(idp: Idp) -> None:
    config = config_for(idp)
    holder = "urn:oasis:names:tc:SAML:2.0:cm:holder-of-key"
    assert "no bearer confirmation" in refused(signed_response(idp, method=holder), config)
    reason = refused(signed_response(idp, bearer_after=None), config)
    assert "no SubjectConfirmationData" in reason


def test_wrong_audience_and_wrong_issuer(idp: Idp) -> None:
    config = config_for(idp)
    other = signed_response(idp, audience="https://someone-else.example.com/sp")
    assert "not meant for this service" in refused(other, config)
    stranger = signed_response(idp, issuer="https://idp.evil.example/saml")
    assert "not from the configured identity provider" in refused(stranger, config)


def test_a_condition_not_understood_is_refused(idp: Idp) -> None:
    unsigned = assertion("ann@example.com")
    conditions = unsigned.find(f"{{{SAML}}}Conditions")
    etree.SubElement(conditions, f"{{{SAML}}}Condition").set(
        "{http://www.w3.org/2001/XMLSchema-instance}type", "DelegationRestrictionType"
    )
    reason = refused(encode(response(sign(unsigned, idp))), config_for(idp))
    assert reason == "the SAML assertion has a condition not understood here (Condition)"
    etree.SubElement(conditions, f"{{{SAML}}}OneTimeUse")  # understood (not enforced)
    conditions.remove(conditions.find(f"{{{SAML}}}Condition"))
    assert verify_saml(encode(sign(unsigned, idp)), config_for(idp)).name_id == "ann@example.com"


def test_status_other_than_success(idp: Idp) -> None:
    denied = "urn:oasis:names:tc:SAML:2.0:status:Requester"
    signed = sign(response(assertion("ann@example.com", placeholder=False), status=denied,
                           placeholder=True), idp)  # fmt: skip
    assert refused(encode(signed), config_for(idp)) == (
        "the SAML response status is Requester, not Success"
    )
    unsigned = response(sign(assertion("ann@example.com"), idp), status=denied)
    assert "not Success" in refused(encode(unsigned), config_for(idp))


def test_hostile_xml(idp: Idp) -> None:
    config = config_for(idp)
    inner = etree.tostring(sign(assertion("ann@example.com"), idp)).decode()
    xxe = '<?xml version="1.0"?><!DOCTYPE a [<!ENTITY x SYSTEM "file:///etc/passwd">]>' + inner
    laughs = '<!DOCTYPE l [<!ENTITY a "lol"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;">]><l>&b;</l>'
    for payload in (xxe, laughs, "<!DOCTYPE a SYSTEM 'http://127.0.0.1:9/x.dtd'><a/>"):
        reason = refused(base64.b64encode(payload.encode()).decode(), config)
        assert reason == "the SAML response may not have a DOCTYPE or entities"
    # a DOCTYPE hidden by another encoding is refused as not UTF-8
    utf16 = base64.b64encode(("<!DOCTYPE a []>" + inner).encode("utf-16")).decode()
    assert refused(utf16, config) == "the SAML response is not UTF-8 XML"
    broken = base64.b64encode(b"<samlp:Response").decode()
    assert refused(broken, config) == "the SAML response is not well-formed XML"


def test_sizes_and_encoding(idp: Idp) -> None:
    config = config_for(idp)
    assert "is over" in refused("A" * (MAX_ENCODED_CHARS + 4), config)
    big = base64.b64encode(b"<a>" + b"x" * MAX_XML_BYTES + b"</a>").decode()
    assert len(big) <= MAX_ENCODED_CHARS
    assert refused(big, config) == f"the SAML response is over {MAX_XML_BYTES} bytes of XML"
    assert refused("not base64 at all!", config) == "the SAML response is not base64"
    assert refused("QUJ", config) == "the SAML response is not base64"  # no padding
    assert refused("ü", config) == "the SAML response is not base64"
    assert refused("", config) == "the SAML response is empty"


def test_unsigned_and_other_shapes(idp: Idp) -> None:
    config = config_for(idp)
    unsigned = encode(response(assertion("ann@example.com", placeholder=False)))
    assert refused(unsigned, config) == "the SAML Assertion is not signed"
    bare = encode(assertion("ann@example.com", placeholder=False))
    assert refused(bare, config) == "the SAML Assertion is not signed"
    assert "holds 0 assertions" in refused(encode(response()), config)
    encrypted = response()
    etree.SubElement(encrypted, f"{{{SAML}}}EncryptedAssertion")
    assert "encrypted SAML assertions" in refused(encode(encrypted), config)
    other = base64.b64encode(b'<x:Envelope xmlns:x="urn:x"/>').decode()
    assert "neither a samlp:Response nor a saml:Assertion" in refused(other, config)
    assert "not configured" in refused(signed_response(idp), SamlConfig((), ENTITY, AUDIENCE))


def test_expired_idp_certificate_is_refused() -> None:
    old = make_idp("Old IdP", valid_days=10, started_days_ago=20)
    assert "does not verify" in refused(signed_response(old), config_for(old))


# --- settings and certificate file --------------------------------------------------------------


def test_settings(tmp_path: Path, idp: Idp, rogue: Idp) -> None:
    pem = tmp_path / "idp.pem"
    pem.write_bytes(idp.cert_pem + rogue.cert_pem)
    env = {
        "JOBENGINE_HOME": str(tmp_path),
        "JOBENGINE_SAML_IDP_CERT": str(pem),
        "JOBENGINE_SAML_IDP_ENTITY_ID": ENTITY,
        "JOBENGINE_SAML_AUDIENCE": AUDIENCE,
    }
    settings = Settings.from_env(env)
    assert (settings.saml_idp_cert, settings.saml_clock_skew) == (str(pem), 120.0)
    assert Settings.from_env({**env, "JOBENGINE_SAML_CLOCK_SKEW": "0"}).saml_clock_skew == 0
    assert Settings.from_env({"JOBENGINE_HOME": str(tmp_path)}).saml_idp_cert is None
    for bad in ("-1", "soon", "100000"):
        with pytest.raises(ConfigurationError, match="JOBENGINE_SAML_CLOCK_SKEW"):
            Settings.from_env({**env, "JOBENGINE_SAML_CLOCK_SKEW": bad})
    for missing in ("JOBENGINE_SAML_IDP_ENTITY_ID", "JOBENGINE_SAML_AUDIENCE"):
        with pytest.raises(ConfigurationError, match=missing):
            Settings.from_env({k: v for k, v in env.items() if k != missing})

    assert load_certificates(pem) == (idp.cert, rogue.cert)
    pem.write_bytes(idp.cert_pem)  # rotated: read again
    assert load_certificates(pem) == (idp.cert,)
    with pytest.raises(ConfigurationError, match=r"no PEM X\.509 certificate"):
        (tmp_path / "empty.pem").write_text("nothing here\n")
        load_certificates(tmp_path / "empty.pem")
    with pytest.raises(ConfigurationError, match="JOBENGINE_SAML_IDP_CERT"):
        load_certificates(tmp_path / "missing.pem")


# --- jobengine.access.auth.authenticate_saml on a real store --------------------------------------


@pytest.fixture
def saml_settings(
    store_only: dict[str, str], idp: Idp, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[None]:
    """This process's settings with SAML sign-on trusting ``idp``."""
    pem = tmp_path / "idp.pem"
    pem.write_bytes(idp.cert_pem)
    monkeypatch.setenv("JOBENGINE_SAML_IDP_CERT", str(pem))
    monkeypatch.setenv("JOBENGINE_SAML_IDP_ENTITY_ID", ENTITY)
    monkeypatch.setenv("JOBENGINE_SAML_AUDIENCE", AUDIENCE)
    reset_settings()
    yield
    monkeypatch.undo()
    reset_settings()


def test_authenticate_saml_names_the_user(saml_settings: None, idp: Idp) -> None:
    company, _ = make_company(0)
    email = f"{company}@example.com"
    caller = authenticate_saml(signed_response(idp, name_id=email.upper()))  # case ignored
    assert caller == authenticate(email, PASSWORD)

    with pytest.raises(IpsFault) as caught:
        authenticate_saml(signed_response(idp, name_id=f"nobody-{company}@example.com"))
    assert (caught.value.fault, caught.value.code) == ("authenticationFault", 10001)
    assert caught.value.reason == "SAML sign-on failed: the asserted user is not known here"

    with pytest.raises(IpsFault) as caught:
        authenticate_saml(signed_response(idp, name_id=email, audience="urn:other"))
    assert caught.value.code == 10001
    assert caught.value.reason == (
        "SAML sign-on failed: the SAML assertion is not meant for this service (audience)"
    )
    with pytest.raises(IpsFault) as caught:
        authenticate_saml("   ")
    assert caught.value.code == 10000


def test_authenticate_saml_without_configuration(store_only: dict[str, str], idp: Idp) -> None:
    reset_settings()
    with pytest.raises(IpsFault) as caught:
        authenticate_saml(signed_response(idp))
    assert (caught.value.code, caught.value.reason) == (
        10001,
        "SAML sign-on is not configured on this server",
    )
    # the same through the SOAP handler of this process
    company, _ = make_company(0)
    body = envelope(
        f'<getActiveJobsParam xmlns="{IPS_NAMESPACE}"><companyHandle>{company}</companyHandle>'
        "</getActiveJobsParam>",
        saml_header(signed_response(idp, name_id=f"{company}@example.com")),
    )
    answer = handle_soap(body.encode(), None, "127.0.0.1")
    assert answer.status == 500 and not answer.gzip
    assert b"<code>10001</code>" in answer.body
    assert b"SAML sign-on is not configured on this server" in answer.body


def test_saml_garbage_from_a_shared_address_locks_no_one_out(saml_settings: None, idp: Idp) -> None:
    company, _ = make_company(0)
    email = f"{company}@example.com"
    office = f"198.51.100.{uuid.uuid4().int % 250 + 1}"
    for _ in range(auth.SPRAY_FAILURES + 5):  # more than any limit: none applies to SAML
        with pytest.raises(IpsFault) as caught:
            authenticate_saml(signed_response(idp, name_id=email, not_after=-600), client=office)
        assert not isinstance(caught.value, TooManyAttempts)
    assert authenticate_saml(signed_response(idp, name_id=email), client=office).email == email
    assert authenticate(email, PASSWORD, client=office).email == email  # nor the passwords


# --- end to end: a real server with the SAML settings --------------------------------------------


@pytest.fixture(scope="module")
def saml_web(
    store_backend: dict[str, str], idp: Idp, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[WebServer]:
    """``jobengine serve`` trusting ``idp`` (the settings reach it through its environment)."""
    pem = tmp_path_factory.mktemp("saml") / "idp.pem"
    pem.write_bytes(idp.cert_pem)
    server = WebServer(
        {
            **store_backend,
            "JOBENGINE_SAML_IDP_CERT": str(pem),
            "JOBENGINE_SAML_IDP_ENTITY_ID": ENTITY,
            "JOBENGINE_SAML_AUDIENCE": AUDIENCE,
            "JOBENGINE_SAML_CLOCK_SKEW": "30",
        }
    )
    yield server
    server.stop()


def header_of(**fields: str) -> str:
    inner = "".join(f"<{k}>{v}</{k}>" for k, v in fields.items())
    return f'<authHeader xmlns="{IPS_NAMESPACE}">{inner}</authHeader>'


def saml_header(text: str, **fields: str) -> str:
    return header_of(samlResponse=text, **fields)


def param(op: str, **fields: str) -> str:
    inner = "".join(f"<{k}>{v}</{k}>" for k, v in fields.items())
    return f'<{op}Param xmlns="{IPS_NAMESPACE}">{inner}</{op}Param>'


def post(web: WebServer, body: str, **headers: str) -> httpx.Response:
    return httpx.post(
        web.url + SERVICE,
        content=body,
        headers={"Content-Type": "text/xml; charset=utf-8", **headers},
        timeout=30,
    )


def post_raw(web: WebServer, body: str) -> tuple[httpx.Response, bytes]:
    """The response and its body as sent (not decoded), asking for no encoding."""
    with httpx.stream(
        "POST",
        web.url + SERVICE,
        content=body,
        headers={"Content-Type": "text/xml; charset=utf-8", "Accept-Encoding": "identity"},
        timeout=30,
    ) as response:
        return response, b"".join(response.iter_raw())


def test_saml_sign_on_end_to_end(store_only: dict[str, str], saml_web: WebServer, idp: Idp,
                                 rogue: Idp) -> None:  # fmt: skip
    mine, _ = make_company(0)
    other, _ = make_company(0)
    email = f"{mine}@example.com"
    saml = signed_response(idp, name_id=email.upper())

    active = post(saml_web, envelope(param("getActiveJobs", companyHandle=mine), saml_header(saml)))
    assert active.status_code == 200, active.text
    # each assertion is accepted once: sent again (a replay), it is refused
    again = parse_fault(
        post(saml_web, envelope(param("submitJob", companyHandle=mine), saml_header(saml)))
    )
    assert (again.element, again.code) == ("authenticationFault", 10001)
    assert again.reason == (
        "SAML sign-on failed: the SAML assertion was already used (each is accepted once)"
    )
    saml = signed_response(idp, name_id=email)
    assert body_child(active).tag == f"{{{IPS_NAMESPACE}}}getActiveJobsReturn"

    nightly = (
        f"<companyHandle>{mine}</companyHandle><jobName>Nightly SSO</jobName>"
        "<execSchedule>0 0 3 1 1 ? 2099</execSchedule><imageServingPublishJob>"
        "<publishType>Full</publishType><emailSetting>None</emailSetting>"
        "</imageServingPublishJob>"
    )
    submitted = post(
        saml_web,
        envelope(f'<submitJobParam xmlns="{IPS_NAMESPACE}">{nightly}</submitJobParam>',
                 saml_header(saml)),
    )  # fmt: skip
    assert submitted.status_code == 200, submitted.text
    assert texts(body_child(submitted), "jobHandle") == [f"{mine}|Nightly SSO|"]
    saml = signed_response(idp, name_id=email)
    jobs = post(saml_web, envelope(param("getScheduledJobs"), saml_header(saml)))
    assert jobs.status_code == 200, jobs.text
    assert texts(body_child(jobs), "jobArray/items/submitUserEmail") == [email]

    # the asserted user is that user, and no one else
    saml = signed_response(idp, name_id=email)
    foreign = post(saml_web, envelope(param("getActiveJobs", companyHandle=other),
                                      saml_header(saml)))  # fmt: skip
    fault = parse_fault(foreign)
    assert (fault.element, fault.code) == ("authorizationFault", 20006)

    rogue_saml = signed_response(rogue, name_id=email)
    fault = parse_fault(post(saml_web, envelope(param("getActiveJobs", companyHandle=mine),
                                                saml_header(rogue_saml))))  # fmt: skip
    assert (fault.status, fault.element, fault.code) == (500, "authenticationFault", 10001)
    assert fault.faultstring == "AuthenticationException"
    assert fault.reason == (
        "SAML sign-on failed: "
        "the SAML signature does not verify with the identity provider's certificate"
    )
    expired = signed_response(idp, name_id=email, not_after=-120)  # past the server's 30 s skew
    fault = parse_fault(
        post(
            saml_web,
            envelope(
                param("getActiveJobs", companyHandle=mine),
                saml_header(expired, faultHttpStatusCode="200"),
            ),
        )
    )
    assert (fault.status, fault.code) == (200, 10001)
    assert fault.reason == "SAML sign-on failed: the SAML assertion has expired"


def test_access_token_and_the_order_of_credentials(
    store_only: dict[str, str], saml_web: WebServer, idp: Idp
) -> None:
    mine, _ = make_company(0)
    email = f"{mine}@example.com"
    token = create_token(email, "sso-test")
    body = param("getActiveJobs", companyHandle=mine)

    def answer(header: str, **headers: str) -> httpx.Response:
        return post(saml_web, envelope(body, header), **headers)

    assert answer(header_of(accessToken=f"  {token}\n")).status_code == 200
    bad = parse_fault(answer(header_of(accessToken="je_not-a-real-token")))
    bearer = parse_fault(post(saml_web, envelope(body), Authorization="Bearer je_not-a-real-token"))
    assert (bad.element, bad.code) == ("authenticationFault", 10001)
    assert bad.reason == "invalid API token"
    assert (bad.code, bad.reason, bad.faultstring) == (
        bearer.code,
        bearer.reason,
        bearer.faultstring,
    )

    # user and password win over a (bad) token; a wrong password is not saved by a good token
    both = header_of(user=email, password=PASSWORD, accessToken="je_wrong")
    assert answer(both).status_code == 200
    wrong = parse_fault(answer(header_of(user=email, password="wrong", accessToken=token)))
    assert (wrong.code, wrong.reason) == (10001, "invalid user name or password")
    # the token wins over samlResponse and HTTP Basic; samlResponse over HTTP Basic
    expired = signed_response(idp, name_id=email, not_after=-600)
    assert answer(header_of(accessToken=token, samlResponse=expired)).status_code == 200
    fault = parse_fault(answer(header_of(samlResponse=expired), Authorization=_basic(email)))
    assert "SAML" in fault.reason
    good = signed_response(idp, name_id=email)
    bad_basic = _basic(email, "wrong")
    assert answer(header_of(samlResponse=good), Authorization=bad_basic).status_code == 200
    # empty fields count as absent: HTTP Basic is used
    empty = header_of(user="", password="", accessToken="", samlResponse="")
    assert answer(empty, Authorization=_basic(email)).status_code == 200


def _basic(user: str, password: str = PASSWORD) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def test_gzip_response_on_answers_and_faults(
    store_only: dict[str, str], saml_web: WebServer
) -> None:
    mine, _ = make_company(0)
    email = f"{mine}@example.com"
    body = param("getActiveJobs", companyHandle=mine)
    for flag in ("true", " 1 "):
        response, raw = post_raw(
            saml_web, envelope(body, header_of(user=email, password=PASSWORD, gzipResponse=flag))
        )
        assert response.status_code == 200
        assert response.headers["content-encoding"] == "gzip"
        assert response.headers["content-type"].startswith("text/xml")
        assert int(response.headers["content-length"]) == len(raw)
        plain = gzip.decompress(raw)
        assert f'<getActiveJobsReturn xmlns="{IPS_NAMESPACE}">'.encode() in plain
        ET.fromstring(plain)

    # a fault is compressed too, with the status faultHttpStatusCode asks for
    header = header_of(user=email, password="wrong", gzipResponse="true", faultHttpStatusCode="200")
    response, raw = post_raw(saml_web, envelope(body, header))
    assert (response.status_code, response.headers["content-encoding"]) == (200, "gzip")
    assert b"<code>10001</code>" in gzip.decompress(raw)

    for flag in ("false", "0", "yes", "TRUE", ""):
        header = header_of(user=email, password=PASSWORD, gzipResponse=flag)
        response, raw = post_raw(saml_web, envelope(body, header))
        assert response.status_code == 200 and "content-encoding" not in response.headers, flag
        assert raw.startswith(b"<?xml")
    # no readable header: never compressed
    response, raw = post_raw(saml_web, "<soapenv:Envelope")
    assert "content-encoding" not in response.headers and b"<code>30003</code>" in raw


def test_zeep_with_gzip_and_saml(store_only: dict[str, str], saml_web: WebServer, idp: Idp) -> None:
    import zeep

    mine, _ = make_company(0)
    email = f"{mine}@example.com"
    client = zeep.Client(f"{saml_web.url}/scene7/webservice/IpsApi.wsdl")  # type: ignore[no-untyped-call]
    header = client.get_element(f"{{{IPS_NAMESPACE}}}authHeader")  # type: ignore[no-untyped-call]
    auth_header = header(samlResponse=signed_response(idp, name_id=email), gzipResponse=True)
    jobs = client.service.getActiveJobs(companyHandle=mine, _soapheaders=[auth_header])
    assert jobs is None or list(jobs) == []
    auth_header = header(samlResponse=signed_response(idp, name_id=email), gzipResponse=True)
    with client.settings(raw_response=True):  # a fresh assertion: each is accepted once
        raw = client.service.getActiveJobs(companyHandle=mine, _soapheaders=[auth_header])
    assert raw.status_code == 200
    assert raw.headers["Content-Encoding"] == "gzip"
    assert b"getActiveJobsReturn" in raw.content  # requests decoded it
