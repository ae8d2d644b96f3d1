"""Which SAML identity providers this server trusts, and for which companies.

Two sources, both optional (SAML sign-on is off without either):

* ``JOBENGINE_SAML_IDP_CERT`` + ``JOBENGINE_SAML_IDP_ENTITY_ID``: one IdP trusted for every
  company (IpsAdmins included);
* ``JOBENGINE_SAML_IDPS``: a JSON file of IdPs, each trusted for the companies it names only::

      [{"entity_id": "https://idp.acme.example/", "certificate": "/etc/jobengine/acme.pem",
        "companies": ["47", "48"]}]

A response is checked against the IdP its (not yet verified) ``Issuer`` names
(:func:`claimed_issuer`); the signature, issuer and every other check then decide
(:func:`jobengine.access.saml.verify_saml`). A caller signed in by a company IdP is a member of that
IdP's companies only, and an IpsAdmin (who acts on every company) cannot be signed in by one.
The file is read again when it changes.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509

from jobengine.access.saml import (
    ASSERTION_NS,
    PROTOCOL_NS,
    SamlConfig,
    SamlError,
    load_certificates,
    parse_message,
)
from jobengine.errors import ConfigurationError
from jobengine.settings import Settings

__all__ = [
    "IdentityProvider",
    "TrustedIdp",
    "claimed_issuer",
    "load_identity_providers",
    "trusted_idp",
    "trusted_idps",
]

SETTING = "JOBENGINE_SAML_IDPS"


@dataclass(frozen=True)
class IdentityProvider:
    """An IdP: its entity id, signing certificates, and the company handles it serves (None:
    every company)."""

    entity_id: str
    certificates: tuple[x509.Certificate, ...]
    companies: frozenset[str] | None = None


def load_identity_providers(path: str | Path) -> tuple[IdentityProvider, ...]:
    """The IdPs of a ``JOBENGINE_SAML_IDPS`` file (read again when it changes);
    ConfigurationError when it is unreadable or malformed."""
    file = Path(path)
    try:
        stat = file.stat()
    except OSError as exc:
        raise ConfigurationError(f"{SETTING} {file}: {exc.strerror}") from exc
    return _read(str(file), stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=4)
def _read(path: str, mtime_ns: int, size: int) -> tuple[IdentityProvider, ...]:
    del mtime_ns, size  # the cache key: a changed file is read again
    try:
        entries = json.loads(Path(path).read_bytes())
    except (OSError, ValueError) as exc:
        raise ConfigurationError(f"{SETTING} {path} is not a readable JSON file: {exc}") from exc
    if not isinstance(entries, list):
        raise ConfigurationError(f"{SETTING} {path} must hold a JSON list of identity providers")
    providers = tuple(_provider(path, n, entry) for n, entry in enumerate(entries, 1))
    ids = [p.entity_id for p in providers]
    if len(set(ids)) != len(ids):
        raise ConfigurationError(f"{SETTING} {path} names an entity_id twice")
    return providers


def _provider(path: str, number: int, entry: Any) -> IdentityProvider:
    where = f"{SETTING} {path}, entry {number}"
    if not isinstance(entry, dict) or set(entry) != {"entity_id", "certificate", "companies"}:
        raise ConfigurationError(f"{where}: give entity_id, certificate and companies")
    entity_id, certificate, companies = entry["entity_id"], entry["certificate"], entry["companies"]
    if not isinstance(entity_id, str) or not entity_id.strip():
        raise ConfigurationError(f"{where}: entity_id must be a non-empty string")
    if not isinstance(certificate, str):
        raise ConfigurationError(f"{where}: certificate must be the path of a PEM file")
    if (
        not isinstance(companies, list)
        or not companies
        or not all(isinstance(c, str) and c.strip() for c in companies)
    ):
        raise ConfigurationError(f"{where}: companies must be a list of company handles")
    try:
        certificates = load_certificates(certificate)
    except ConfigurationError as exc:  # its message names the single-IdP setting
        raise ConfigurationError(f"{where}: {exc}") from exc
    return IdentityProvider(
        entity_id.strip(), certificates, frozenset(c.strip() for c in companies)
    )


def claimed_issuer(text: str) -> str | None:
    """The ``Issuer`` a base64 samlResponse claims (the Response's, else its Assertion's), read
    with every check of the XML but none of the signature: only to choose the IdP to verify it
    with. SamlError when the text is no readable SAML message."""
    root = parse_message(text)
    for path in (
        f"{{{ASSERTION_NS}}}Issuer",
        f"{{{ASSERTION_NS}}}Assertion/{{{ASSERTION_NS}}}Issuer",
    ):
        issuer = root.find(path)
        if issuer is not None and issuer.text and issuer.text.strip():
            return str(issuer.text).strip()
    if root.tag not in (f"{{{PROTOCOL_NS}}}Response", f"{{{ASSERTION_NS}}}Assertion"):
        raise SamlError("the SAML message is neither a samlp:Response nor a saml:Assertion")
    return None


@dataclass(frozen=True)
class TrustedIdp:
    """An IdP as a sign-on checks it: what :func:`jobengine.access.saml.verify_saml` is given, and
    the company handles its users may act for (None: every company)."""

    config: SamlConfig
    companies: frozenset[str] | None


def trusted_idps(settings: Settings) -> dict[str, TrustedIdp]:
    """Every IdP the settings trust, by entity id (empty: SAML sign-on is off);
    ConfigurationError for an unreadable certificate or IdP file, or one IdP named twice."""
    providers: list[IdentityProvider] = []
    if settings.saml_idp_cert:
        certificates = load_certificates(settings.saml_idp_cert)
        providers.append(IdentityProvider(settings.saml_idp_entity_id or "", certificates))
    if settings.saml_idps:
        providers.extend(load_identity_providers(settings.saml_idps))
    endpoint = settings.soap_endpoint_url
    trusted: dict[str, TrustedIdp] = {}
    for idp in providers:
        if idp.entity_id in trusted:
            raise ConfigurationError(f"the SAML identity provider {idp.entity_id!r} is named twice")
        config = SamlConfig(
            certificates=idp.certificates,
            entity_id=idp.entity_id,
            audience=settings.saml_audience or "",
            clock_skew=settings.saml_clock_skew,
            max_validity=settings.saml_max_validity,
            recipients=(endpoint,) if endpoint else (),
        )
        trusted[idp.entity_id] = TrustedIdp(config, idp.companies)
    return trusted


def trusted_idp(text: str, trusted: dict[str, TrustedIdp]) -> TrustedIdp:
    """The IdP to verify a samlResponse with: the one its Issuer names (with a single IdP, that
    one, so that a foreign issuer gets the issuer check's own reason); SamlError otherwise."""
    if len(trusted) == 1:
        return next(iter(trusted.values()))
    chosen = trusted.get(claimed_issuer(text) or "")
    if chosen is None:
        raise SamlError("the SAML message is not from an identity provider this server trusts")
    return chosen
