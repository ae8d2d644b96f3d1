"""IPS handles: how we write them, and every observed form we accept.

Job handles are ``<company>|<key>|<run>[|<id>]``, optionally prefixed ``j|``:

* ``47|My Test Job|``: the live job named "My Test Job" (what submitJob returns);
* ``47|My Test Job||12``: job 12, returned for a duplicate name while the first still lives;
* ``47||My Test Job_2026-11-23-08:30:00``: one run of a job (a job log).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import datetime

from jobengine.errors import InvalidParameter

# Row ids (jobs, presets) are 32-bit integers in the job store; a larger one names nothing.
MAX_ROW_ID = 2**31 - 1
__all__ = [
    "MAX_ROW_ID",
    "JobRef",
    "asset_handle",
    "company_handle_forms",
    "company_segment",
    "job_handle",
    "parse_job_handle",
    "run_name",
    "run_name_stamp",
    "uuid4_text",
    "uuid4_texts",
]


@dataclass(frozen=True)
class JobRef:
    """The parts of a job handle: company segment, scheduler key, run name, numeric id."""

    company: str
    key: str = ""
    run: str = ""
    job_id: int | None = None


def company_segment(company_handle: str) -> str:
    """The company part of a job handle (``c|6`` -> ``6``)."""
    return company_handle[2:] if company_handle.startswith("c|") else company_handle


def company_handle_forms(handle: str) -> tuple[str, ...]:
    """The stored company handles ``handle`` may name, in order: itself, then without ``c|``."""
    bare = company_segment(handle)
    return (handle,) if bare == handle else (handle, bare)


def job_handle(company_handle: str, key: str, job_id: int | None = None) -> str:
    """The handle submitJob returns."""
    base = f"{company_segment(company_handle)}|{key}|"
    return base if job_id is None else f"{base}|{job_id}"


def run_handle(company_handle: str, run: str) -> str:
    """The handle of one run (a job log)."""
    return f"{company_segment(company_handle)}||{run}"


def run_name(original: str, when: datetime, attempt: int = 1) -> str:
    """The unique per-run name: ``<jobName>_<yyyy-MM-dd-HH:mm:ss>`` (``-2``... on collisions)."""
    name = original + run_name_stamp(when)
    return name if attempt == 1 else f"{name}-{attempt}"


def run_name_stamp(when: datetime) -> str:
    """What :func:`run_name` puts after the job name for ``when`` (a batch of runs named at
    one time writes it once): ``_<yyyy-MM-dd-HH:mm:ss>``."""
    return f"_{when:%Y-%m-%d-%H:%M:%S}"


def asset_handle(company_id: int, type_code: int, asset_id: int) -> str:
    """An asset handle in the IPS shape ``a|<company>|<type>|<id>``."""
    return f"a|{company_id}|{type_code}|{asset_id}"


def parse_job_handle(handle: str) -> JobRef:
    """Split any accepted job handle form; InvalidParameter (30001) when it fits none."""
    parts = handle.split("|")
    if parts and parts[0] == "j":
        parts = parts[1:]
    if len(parts) not in (3, 4) or not parts[0] or not (parts[1] or parts[2]):
        raise InvalidParameter(f"jobHandle {handle!r} is not a job handle", field="jobHandle")
    job_id: int | None = None
    if len(parts) == 4:
        if not (parts[3].isascii() and parts[3].isdigit()) or int(parts[3]) > MAX_ROW_ID:
            raise InvalidParameter(f"jobHandle {handle!r} has a bad id", field="jobHandle")
        job_id = int(parts[3])
    return JobRef(company=parts[0], key=parts[1], run=parts[2], job_id=job_id)


def uuid4_text(raw: bytes | bytearray | None = None) -> str:
    """``str(uuid.uuid4())`` (task ids, kombu's delivery tags) without making a ``UUID`` object
    (a bulk submission makes two a job): 16 random bytes (``raw``, for tests) with the version
    (4) and the RFC 4122 variant bits set, as ``uuid.uuid4`` sets them, in its text form."""
    data = bytearray(os.urandom(16) if raw is None else raw)
    data[6] = (data[6] & 0x0F) | 0x40
    data[8] = (data[8] & 0x3F) | 0x80
    h = data.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


# uuid4's version (4) and RFC 4122 variant bits, set on a byte by bytes.translate
_VERSION_4 = bytes((b & 0x0F) | 0x40 for b in range(256))
_VARIANT = bytes((b & 0x3F) | 0x80 for b in range(256))
# where each of a uuid's 32 hex digits goes in its 36-character text (the others are dashes)
_DIGIT_AT = [i for i in range(36) if i not in (8, 13, 18, 23)]
# from this many ids on, placing their digits a column at a time costs less than one by one
_BY_COLUMNS = 12


def uuid4_texts(count: int, raw: bytes | None = None) -> list[str]:
    """``count`` of :func:`uuid4_text` (a batch's task ids, delivery tags) from one read of
    the system's randomness (``raw``, 16 bytes each, for tests), their bits set and their
    digits placed a column at a time: about a quarter of the cost of one call each.

    Placing the digits costs 32 slice assignments whatever the count (about 17 us): fewer than
    :data:`_BY_COLUMNS` ids (a submit's task message and event tags, one each) are written one
    by one, from the same read."""
    data = bytearray(os.urandom(16 * count) if raw is None else raw)
    if len(data) != 16 * count:
        raise ValueError(f"{len(data)} bytes for {count} ids")
    if count < _BY_COLUMNS:
        return [uuid4_text(data[at : at + 16]) for at in range(0, 16 * count, 16)]
    data[6::16] = data[6::16].translate(_VERSION_4)
    data[8::16] = data[8::16].translate(_VARIANT)
    digits = data.hex().encode()
    text = bytearray(b"-" * (36 * count))
    for digit, at in enumerate(_DIGIT_AT):
        text[at::36] = digits[digit::32]
    joined = text.decode()
    return [joined[i : i + 36] for i in range(0, 36 * count, 36)]
