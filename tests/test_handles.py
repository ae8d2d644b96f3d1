"""Job handles (``company|name|``, ``j|id||run``) and run names: every observed form parses,
one form is written."""

from __future__ import annotations

import uuid
from datetime import datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jobengine.errors import InvalidParameter
from jobengine.handles import (
    JobRef,
    job_handle,
    parse_job_handle,
    run_name,
    uuid4_text,
    uuid4_texts,
)


@pytest.mark.parametrize(
    ("handle", "ref"),
    [
        ("47|My Test Job|", JobRef("47", "My Test Job", "", None)),
        ("0|Cleanup|", JobRef("0", "Cleanup", "", None)),
        ("47||Add_2007-09-14-15:04:34", JobRef("47", "", "Add_2007-09-14-15:04:34", None)),
        ("j|6||Add_2007-10-24-16:11:07", JobRef("6", "", "Add_2007-10-24-16:11:07", None)),
        ("47|Dup||12", JobRef("47", "Dup", "", 12)),
        ("j|2101||uploadFileServlet-1376682217351|54091",
         JobRef("2101", "", "uploadFileServlet-1376682217351", 54091)),
    ],
)  # fmt: skip
def test_every_observed_job_handle_form_parses(handle: str, ref: JobRef) -> None:
    assert parse_job_handle(handle) == ref


@pytest.mark.parametrize("bad", ["", "47", "47||", "|x|", "47|x||abc", "a|b|c|d|e"])
def test_bad_job_handles_are_a_30001_fault(bad: str) -> None:
    with pytest.raises(InvalidParameter) as caught:
        parse_job_handle(bad)
    assert caught.value.code == 30001


@pytest.mark.parametrize("bad_id", ["2147483648", "9" * 30, "\u00b2", "\u0663"])
def test_job_ids_are_ascii_and_fit_the_store(bad_id: str) -> None:
    # Found by fuzzing: "²" passed isdigit() and failed int(); a huge id overflowed the store.
    with pytest.raises(InvalidParameter, match="has a bad id"):
        parse_job_handle(f"47|x||{bad_id}")
    assert parse_job_handle("47|x||2147483647").job_id == 2**31 - 1


def test_handles_and_run_names_are_written_in_one_form() -> None:
    assert job_handle("47", "My Test Job") == "47|My Test Job|"
    assert job_handle("c|47", "X", 9) == "47|X||9"
    when = datetime(2026, 11, 23, 8, 30, 5)
    assert run_name("Add", when) == "Add_2026-11-23-08:30:05"
    assert run_name("Add", when, 2) == "Add_2026-11-23-08:30:05-2"


@settings(max_examples=300)
@given(raw=st.binary(min_size=16, max_size=16))
def test_uuid4_text_is_uuid4s_text_of_the_same_bytes(raw: bytes) -> None:
    assert uuid4_text(raw) == str(uuid.UUID(bytes=raw, version=4))


def test_uuid4_text_is_random_version_4() -> None:
    texts = {uuid4_text() for _ in range(1000)}
    assert len(texts) == 1000
    for text in texts:
        parsed = uuid.UUID(text)
        assert str(parsed) == text and parsed.version == 4
        assert parsed.variant == uuid.RFC_4122


@settings(max_examples=200)
@given(raw=st.lists(st.binary(min_size=16, max_size=16), max_size=40))
def test_uuid4_texts_are_uuid4s_texts_of_the_same_bytes(raw: list[bytes]) -> None:
    assert uuid4_texts(len(raw), b"".join(raw)) == [
        str(uuid.UUID(bytes=one, version=4)) for one in raw
    ]


def test_uuid4_texts_are_random_version_4() -> None:
    # many (their digits placed a column at a time) and few (one by one: a submit's)
    texts = uuid4_texts(1000) + uuid4_texts(1000) + [t for _ in range(500) for t in uuid4_texts(2)]
    assert len(set(texts)) == 3000
    for text in texts:
        parsed = uuid.UUID(text)
        assert str(parsed) == text and parsed.version == 4
        assert parsed.variant == uuid.RFC_4122
    with pytest.raises(ValueError, match="17 bytes for 1 ids"):
        uuid4_texts(1, b"x" * 17)
