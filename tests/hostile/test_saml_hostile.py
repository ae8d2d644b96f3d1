"""SAML assertions as an attacker sends them: replayed, valid for decades, addressed to another
service or answering a request this service never made."""

from __future__ import annotations

import dataclasses
import json
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from jobengine.access.auth import authenticate, authenticate_saml, authorize
from jobengine.access.replay import ReplayCache
from jobengine.access.saml import verify_saml
from jobengine.access.samlidps import load_identity_providers
from jobengine.assets.catalog import company_by_handle, create_user
from jobengine.errors import ConfigurationError, IpsFault
from jobengine.runtime import get_runtime
from jobengine.settings import Settings, reset_settings
from tests.support.helpers import PASSWORD, make_company
from tests.support.saml import (
    AUDIENCE,
    ENDPOINT,
    ENTITY,
    Idp,
    assertion,
    config_for,
    encode,
    make_idp,
    refused,
    response,
    sign,
    signed_response,
)


@pytest.fixture(scope="module")
def idp() -> Idp:
    return make_idp("Hostile-test IdP")


@pytest.fixture
def saml_env(
    store_only: dict[str, str], idp: Idp, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[None]:
    pem = tmp_path / "idp.pem"
    pem.write_bytes(idp.cert_pem)
    monkeypatch.setenv("JOBENGINE_SAML_IDP_CERT", str(pem))
    monkeypatch.setenv("JOBENGINE_SAML_IDP_ENTITY_ID", ENTITY)
    monkeypatch.setenv("JOBENGINE_SAML_AUDIENCE", AUDIENCE)
    monkeypatch.setenv("JOBENGINE_PUBLIC_URL", "https://ips.example.com/")
    reset_settings()
    yield
    monkeypatch.undo()
    reset_settings()


def test_an_assertion_valid_for_30_years_is_good_for_the_cap_only(idp: Idp) -> None:
    decades = 30 * 365 * 86400
    fresh = signed_response(idp, not_after=decades, bearer_after=decades)
    identity = verify_saml(fresh, config_for(idp, max_validity=600))
    assert identity.not_on_or_after <= datetime.now(UTC) + timedelta(seconds=601)
    old = signed_response(idp, issued=-3600, not_after=decades, bearer_after=decades)
    assert refused(old, config_for(idp, max_validity=600)) == (
        "the SAML assertion was issued more than 600 s ago (JOBENGINE_SAML_MAX_VALIDITY)"
    )
    future = signed_response(idp, issued=3600)
    assert refused(future, config_for(idp)) == "the SAML assertion is issued in the future"
    no_instant = assertion("ann@example.com")
    del no_instant.attrib["IssueInstant"]
    assert refused(encode(response(sign(no_instant, idp))), config_for(idp)) == (
        "the SAML assertion has no IssueInstant"
    )


def test_recipient_destination_and_in_response_to(idp: Idp) -> None:
    ours = config_for(idp)
    assert verify_saml(signed_response(idp, recipient=ENDPOINT), ours).name_id
    shouted = "HTTPS://IPS.EXAMPLE.COM/scene7/services/IpsApiService/"  # the same URL
    assert verify_saml(signed_response(idp, recipient=shouted), ours).name_id
    assert refused(signed_response(idp, recipient="https://other.example/acs"), ours) == (
        "the SAML SubjectConfirmationData Recipient is not this service's endpoint"
    )
    assert refused(signed_response(idp, in_response_to="_req1"), ours) == (
        "the SAML SubjectConfirmationData answers a request this service did not make"
    )
    unconfigured = dataclasses.replace(ours, recipients=())
    assert refused(signed_response(idp, recipient=ENDPOINT), unconfigured) == (
        "the SAML SubjectConfirmationData Recipient is not this service's endpoint "
        "(set JOBENGINE_PUBLIC_URL)"
    )
    signed = sign(assertion("ann@example.com"), idp)
    elsewhere = response(signed, attributes='Destination="https://other.example/acs"')
    assert refused(encode(elsewhere), ours) == (
        "the SAML Response Destination is not this service's endpoint"
    )
    here = response(signed, attributes=f'Destination="{ENDPOINT}"')
    assert verify_saml(encode(here), ours).name_id == "ann@example.com"
    solicited = response(signed, attributes='InResponseTo="_someone-elses-request"')
    assert refused(encode(solicited), ours) == (
        "the SAML Response answers a request this service did not make"
    )


def test_a_signed_assertion_is_accepted_once(saml_env: None, idp: Idp) -> None:
    company, _ = make_company(0)
    email = f"{company}@example.com"
    text = signed_response(idp, name_id=email, recipient=ENDPOINT)
    assert authenticate_saml(text, client="203.0.113.1").email == email
    for client in ("203.0.113.1", "198.51.100.7"):  # the same, replayed from anywhere
        with pytest.raises(IpsFault) as caught:
            authenticate_saml(text, client=client)
        assert caught.value.code == 10001
        assert caught.value.reason == (
            "SAML sign-on failed: the SAML assertion was already used (each is accepted once)"
        )
    assert authenticate_saml(signed_response(idp, name_id=email)).email == email  # a new one


def test_two_processes_share_what_they_have_seen(store_only: dict[str, str]) -> None:
    prefix = f"jobengine:{{test-seen-{uuid.uuid4().hex[:8]}}}:"
    one, two = ReplayCache(prefix), ReplayCache(prefix)
    outcomes: list[bool] = []
    lock = threading.Lock()

    def use(cache: ReplayCache) -> None:
        fresh = cache.first_use("issuer\x00_the-id", 60)
        with lock:
            outcomes.append(fresh)

    threads = [threading.Thread(target=use, args=(one if i % 2 else two,)) for i in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == [False] * 19 + [True]
    assert one._local == {} and two._local == {}  # decided in Redis


def test_replays_are_refused_in_process_while_redis_is_down(tmp_path: Path) -> None:
    down = ReplayCache(
        "x:",
        connect=lambda: redis.Redis(
            unix_socket_path=str(tmp_path / "none.sock"),
            socket_timeout=1,
            retry=Retry(NoBackoff(), 0),
        ),
        retry_interval=60,
    )
    assert down.first_use("a", 60) is True
    assert down.first_use("a", 60) is False
    assert down.first_use("b", 60) is True


@pytest.mark.parametrize("bad", ["0", "-5", "soon"])
def test_the_validity_cap_setting(bad: str) -> None:
    home = {"JOBENGINE_HOME": "/tmp/x"}
    assert Settings.from_env(home).saml_max_validity == 600
    assert (
        Settings.from_env({**home, "JOBENGINE_SAML_MAX_VALIDITY": "120"}).saml_max_validity == 120
    )
    with pytest.raises(ConfigurationError, match="JOBENGINE_SAML_MAX_VALIDITY"):
        Settings.from_env({**home, "JOBENGINE_SAML_MAX_VALIDITY": bad})


# --- an identity provider per company ---------------------------------------------------------


@pytest.fixture
def company_idps(
    store_only: dict[str, str], idp: Idp, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[Idp, Idp, str, str]]:
    """Two company IdPs (JOBENGINE_SAML_IDPS), each trusted for one company."""
    other = make_idp("Other company IdP")
    mine, theirs = make_company(0)[0], make_company(0)[0]
    entries = []
    for n, (signer, company) in enumerate(((idp, mine), (other, theirs))):
        pem = tmp_path / f"idp{n}.pem"
        pem.write_bytes(signer.cert_pem)
        entries.append({"entity_id": f"urn:idp:{n}", "certificate": str(pem),
                        "companies": [company]})  # fmt: skip
    (tmp_path / "idps.json").write_text(json.dumps(entries))
    monkeypatch.setenv("JOBENGINE_SAML_IDPS", str(tmp_path / "idps.json"))
    monkeypatch.setenv("JOBENGINE_SAML_AUDIENCE", AUDIENCE)
    reset_settings()
    yield idp, other, mine, theirs
    monkeypatch.undo()
    reset_settings()


def _from(signer: Idp, name_id: str, issuer: str) -> str:
    """A Response and its signed Assertion, both from ``issuer`` (as an IdP sends them)."""
    return encode(response(sign(assertion(name_id, issuer=issuer), signer), issuer=issuer))


def _member_of_both(mine: str, theirs: str, user_type: str = "IpsUser") -> str:
    email = f"both-{uuid.uuid4().hex[:8]}@example.com"
    with get_runtime().store.write() as session:
        companies = [company_by_handle(session, h) for h in (mine, theirs)]
        create_user(session, email, PASSWORD, user_type, companies)
    return email


def test_a_company_idp_signs_in_for_its_companies_only(
    company_idps: tuple[Idp, Idp, str, str],
) -> None:
    idp, other, mine, theirs = company_idps
    email = _member_of_both(mine, theirs)
    by_mine = authenticate_saml(_from(idp, email, "urn:idp:0"))
    assert authorize(by_mine, "getActiveJobs", mine) is not None
    with pytest.raises(IpsFault) as caught:
        authorize(by_mine, "getActiveJobs", theirs)  # a member, but not through this IdP
    assert caught.value.code == 20006
    by_theirs = authenticate_saml(_from(other, email, "urn:idp:1"))
    assert authorize(by_theirs, "getActiveJobs", theirs) is not None
    assert authenticate(email, PASSWORD).company_ids == by_mine.company_ids | by_theirs.company_ids


def test_a_company_idp_cannot_vouch_for_others(company_idps: tuple[Idp, Idp, str, str]) -> None:
    idp, other, mine, theirs = company_idps
    cases = [
        # another company's IdP key under this IdP's name: the signature decides
        (_from(other, f"{mine}@example.com", "urn:idp:0"),
         "the SAML signature does not verify with the identity provider's certificate"),
        # a user of the other company only
        (_from(idp, f"{theirs}@example.com", "urn:idp:0"),
         "the user is in no company this identity provider serves"),
        # an IpsAdmin acts on every company: no company IdP can vouch for that
        (_from(idp, _member_of_both(mine, theirs, "IpsAdmin"), "urn:idp:0"),
         "an IpsAdmin cannot sign in through a company's identity provider"),
        (_from(idp, f"{mine}@example.com", "urn:idp:unknown"),
         "the SAML message is not from an identity provider this server trusts"),
    ]  # fmt: skip
    for text, reason in cases:
        with pytest.raises(IpsFault) as caught:
            authenticate_saml(text)
        assert caught.value.reason == f"SAML sign-on failed: {reason}"


@pytest.mark.parametrize(
    "content",
    ["not json", "{}", '[{"entity_id": "x"}]',
     '[{"entity_id": "", "certificate": "/nope.pem", "companies": ["a"]}]',
     '[{"entity_id": "x", "certificate": "/nope.pem", "companies": ["a"]}]',
     '[{"entity_id": "x", "certificate": "%s", "companies": []}]'],
)  # fmt: skip
def test_a_malformed_idp_file_is_a_configuration_error(
    content: str, tmp_path: Path, idp: Idp
) -> None:
    pem = tmp_path / "idp.pem"
    pem.write_bytes(idp.cert_pem)
    path = tmp_path / "idps.json"
    path.write_text(content.replace("%s", str(pem)))
    with pytest.raises(ConfigurationError, match="JOBENGINE_SAML_IDPS"):
        load_identity_providers(path)
