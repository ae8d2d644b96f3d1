"""Property tests: whatever the input, the XML reader, the Image Serving modifier parser (and
the size plan built from what it parsed) and the cron parser answer with the project's own
faults, never another exception, within a generous time bound per input."""

from __future__ import annotations

import contextlib
import string
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jobengine.cron import MAX_YEAR, MIN_YEAR, CronError, next_fire_times, parse
from jobengine.errors import InvalidRequestXml, IpsFault
from jobengine.imaging.geometry import check_plan, plan
from jobengine.imaging.limits import Limits
from jobengine.imaging.modifiers import format_query, parse_modifiers
from jobengine.model.ipsxml import IPS_NAMESPACE, parse_submit_job_xml, read_xml
from jobengine.web.soap import _auth_header, _envelope_parts, _operation

# A generous bound per input (hostile input must not take minutes); no speed is asserted.
BOUNDED = settings(
    max_examples=150,
    deadline=timedelta(seconds=5),
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)

# --- the XML reader -----------------------------------------------------------------------------

SOAP_ENV = "http://schemas.xmlsoap.org/soap/envelope/"
NAMESPACES = [IPS_NAMESPACE, f"{IPS_NAMESPACE}/2014-04-03", f"{IPS_NAMESPACE}/2099-99-99",
              SOAP_ENV, "urn:x", ""]  # fmt: skip
TAGS = ["submitJobParam", "companyHandle", "jobName", "exportJob", "assetHandleArray", "items",
        "fmt", "execTime", "execSchedule", "locale", "emailSetting", "imageServingPublishJob",
        "publishType", "Envelope", "Header", "Body", "authHeader", "getActiveJobsParam",
        "x"]  # fmt: skip
PROLOGUES = [
    "",
    '<?xml version="1.0"?>',
    '<?xml version="1.0" encoding="UTF-7"?>',
    '<?xml version="1.0" encoding="UTF-16"?>',
    '<?xml version="1.0" encoding="latin-1"?>',
    '<?xml version="1.0" encoding="x-bogus"?>',
    '<!DOCTYPE x [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;">]>',
    '<!DOCTYPE x SYSTEM "file:///etc/passwd">',
    '<!DOCTYPE x [<!ENTITY e SYSTEM "http://127.0.0.1:1/">]>',
    "<?php evil?>",
    "\ufeff",
]
TEXTS = st.text(alphabet=string.printable + "\u200b\u202e\x00\ud800é漢&<>;", max_size=40)


def _element(children: Any) -> Any:
    tag = st.tuples(st.sampled_from(NAMESPACES), st.sampled_from(TAGS))
    attrs = st.dictionaries(st.sampled_from(["a", "b", "xsi:nil", "xmlns", "ID"]), TEXTS,
                            max_size=3)  # fmt: skip
    return st.builds(_render, tag, attrs, st.lists(st.one_of(TEXTS, children), max_size=4))


def _render(tag: tuple[str, str], attrs: dict[str, str], content: list[str]) -> str:
    namespace, name = tag
    declared = f' xmlns="{namespace}"' if namespace else ""
    quoted = "".join(f' {k}="{v}"' for k, v in attrs.items())
    return f"<{name}{declared}{quoted}>{''.join(content)}</{name}>"


DOCUMENTS = st.builds(
    lambda prologue, body: prologue + body,
    st.sampled_from(PROLOGUES),
    st.recursive(TEXTS, _element, max_leaves=30),
)


def _reads_or_refuses(document: str | bytes) -> None:
    with contextlib.suppress(InvalidRequestXml):
        read_xml(document)


@BOUNDED
@given(st.binary(max_size=3000))
def test_read_xml_on_any_bytes(data: bytes) -> None:
    _reads_or_refuses(data)


@BOUNDED
@given(st.text(max_size=3000))
def test_read_xml_on_any_text(text: str) -> None:
    _reads_or_refuses(text)


@BOUNDED
@given(DOCUMENTS, st.booleans())
def test_submit_job_documents(document: str, as_bytes: bool) -> None:
    data: str | bytes = document.encode("utf-8", "surrogatepass") if as_bytes else document
    with contextlib.suppress(IpsFault):
        parse_submit_job_xml(data)


@BOUNDED
@given(DOCUMENTS)
def test_soap_envelopes(document: str) -> None:
    try:
        header, payload = _envelope_parts(read_xml(document))
        _auth_header(header)
        _operation(payload)
    except IpsFault:
        pass


# --- the Image Serving modifier parser ----------------------------------------------------------

COMMANDS = ["wid", "hei", "scl", "fit", "fmt", "qlt", "crop", "cropN", "rect", "rotate", "flip",
            "align", "bgc", "color", "icc", "iccEmbed", "op_sharpen", "op_usm", "resMode",
            "quantize", "printRes", "size", "layer", "text", "src", "$var", "$m$", "req",
            "cache", "WID", "unknown"]  # fmt: skip
VALUES = st.one_of(
    st.sampled_from(["0", "1", "-1", "1e-320", "1e-300", "4.9e-324", "1e308", "nan", "inf",
                     "65535", "65536", "999999999", "0.5", "jpeg", "png-alpha", "tif,lzw",
                     "fit,1", "crop,0", "0,0,1,1", "0.1,0.1,0.5,0.5", "$var$", "%24m%24",
                     "%", "%zz", "%00", "ffffff", "sRGB", "../../etc/passwd"]),
    st.text(max_size=20),
)  # fmt: skip
MODIFIERS = st.builds(
    "&".join,
    st.lists(st.builds(lambda c, v: f"{c}={v}", st.sampled_from(COMMANDS), VALUES), max_size=8),
)
PRESETS = st.dictionaries(
    st.sampled_from(["m", "n", "small", "M"]),
    st.one_of(MODIFIERS, st.sampled_from(["$m$", "$n$&$m$", "$m$&$m$&$m$&$m$"])),
    max_size=4,
)


@BOUNDED
@given(st.one_of(MODIFIERS, st.text(max_size=600)), PRESETS,
       st.integers(1, 70000), st.integers(1, 70000))  # fmt: skip
def test_modifiers_and_their_plan(query: str, presets: dict[str, str], w: int, h: int) -> None:
    try:
        request = parse_modifiers(query, presets)
    except IpsFault:
        return
    assert parse_modifiers(format_query(request)) == request  # what it says is what it read
    with contextlib.suppress(IpsFault):
        check_plan(plan(w, h, request), Limits())


NUMERIC = ["wid", "hei", "scl", "qlt", "rotate", "printRes", "crop", "cropN", "rect", "size",
           "op_usm", "op_sharpen", "resMode", "align"]  # fmt: skip
NASTY = ["5e-324", "1e-320", "2.2250738585072014e-308", "1e-300", "1e308",
         "1.7976931348623157e308", "-0", "0.0", "1e-999", "1e999", "999999999", "-999999999",
         "0.000001", ".5", "5."]  # fmt: skip
NUMBERS = st.one_of(
    st.sampled_from(NASTY),
    st.floats(allow_nan=True, allow_infinity=True, allow_subnormal=True).map(repr),
    st.floats(min_value=0, max_value=1e-300, allow_subnormal=True).map(lambda f: f"{f:e}"),
    st.integers(min_value=-(10**12), max_value=10**12).map(str),
)


@settings(BOUNDED, max_examples=400)
@given(st.sampled_from(NUMERIC), st.lists(NUMBERS, min_size=1, max_size=4),
       st.integers(1, 70000), st.integers(1, 70000))  # fmt: skip
def test_numbers_at_their_extremes(command: str, numbers: list[str], w: int, h: int) -> None:
    test_modifiers_and_their_plan.hypothesis.inner_test(  # type: ignore[attr-defined]
        f"{command}={','.join(numbers)}", {}, w, h
    )


def test_a_10_kb_modifier_string_and_macro_bombs() -> None:
    for query, presets in (
        ("wid=1&" * 1700, {}),
        ("$m$", {"m": "$n$&$n$&$n$", "n": "$o$&$o$&$o$", "o": "wid=1&" * 80}),
        ("$m$", {"m": "$m$"}),
    ):
        try:
            parse_modifiers(query, presets)
        except IpsFault as fault:
            assert len(fault.reason) < 500


# --- the cron parser ----------------------------------------------------------------------------

FIELD_TOKENS = ["*", "?", "0", "59", "60", "-1", "1-5", "5-1", "*/0", "*/1", "0/15", "L", "LW",
                "L-3", "15W", "W", "6L", "2#5", "7#6", "MON-FRI", "JAN", "JAN-DEC/3", "1,2,3",
                "9999999999", "2099", "1970", "1969", "2100", ",", "--", "#", "L-40"]  # fmt: skip
CRONS = st.builds(
    " ".join, st.lists(st.one_of(st.sampled_from(FIELD_TOKENS), st.text(max_size=6)),
                       min_size=0, max_size=8),
)  # fmt: skip
ZONES = st.sampled_from(["UTC", "Europe/Berlin", "America/New_York", "Australia/Lord_Howe",
                         "Pacific/Apia", "Asia/Kathmandu", "America/Sao_Paulo",
                         "No/Such_Zone"])  # fmt: skip
INSTANTS = st.datetimes(
    min_value=datetime(MIN_YEAR, 1, 1), max_value=datetime(MAX_YEAR, 12, 31), timezones=st.just(UTC)
)


@BOUNDED
@given(st.one_of(CRONS, st.text(max_size=200)), ZONES, INSTANTS)
def test_cron_expressions_and_their_fire_times(expression: str, zone: str, start: datetime) -> None:
    try:
        parse(expression)
    except CronError:
        return
    try:
        times = next_fire_times(expression, zone, start, 3)
    except CronError:
        return
    assert times == sorted(times) and all(t > start for t in times)
