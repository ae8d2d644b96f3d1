"""Image presets (IPS "image formats", IS macros): saveImageFormat, getImageFormats,
deleteImageFormat.

A preset is a name (unique per company, case-insensitive, free text as in IPS: see
:mod:`jobengine.model.presets`) and a modifier definition of at most 512 characters, validated by
the modifier parser when saved and stored as given. Handles look like ``47|301``.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.orm import Session

from jobengine.assets.catalog import resolve_company
from jobengine.errors import (
    IllegalCompany,
    InvalidParameter,
    IpsFault,
    MissingParameter,
    caller_faults,
)
from jobengine.handles import MAX_ROW_ID, company_segment
from jobengine.model.presets import PRESET_NAME_PATTERN, preset_name_problem
from jobengine.runtime import get_runtime
from jobengine.store.presets import (
    add_image_format,
    image_format_by_id,
    image_format_named,
    image_formats_by_name,
    remove_preset,
)
from jobengine.store.schema import ImageFormat, utcnow
from jobengine.store.users import CompanyLike, CompanyRef

__all__ = [
    "MAX_DEFINITION",
    "NAME_PATTERN",
    "ImageFormatInfo",
    "delete_image_format",
    "get_image_formats",
    "save_image_format",
]

MAX_DEFINITION = 512
NAME_PATTERN = PRESET_NAME_PATTERN


@dataclass(frozen=True)
class ImageFormatInfo:
    """An ImageFormat as IPS returns it."""

    image_format_handle: str
    name: str
    url_modifier: str


def _handle(company: CompanyLike, preset: ImageFormat) -> str:
    return f"{company_segment(company.handle)}|{preset.id}"


def _find(session: Session, company: CompanyLike, handle: str) -> ImageFormat:
    segment, _, number = handle.rpartition("|")
    if not (number.isascii() and number.isdigit()):
        raise InvalidParameter(f"imageFormatHandle {handle!r} is not a preset handle",
                               field="imageFormatHandle")  # fmt: skip
    if segment != company_segment(company.handle):
        raise IllegalCompany(f"preset {handle!r} is not of company {company.handle!r}",
                             field="imageFormatHandle")  # fmt: skip
    preset = image_format_by_id(session, int(number)) if int(number) <= MAX_ROW_ID else None
    if preset is None or preset.company_id != company.id:
        raise InvalidParameter(f"unknown imageFormatHandle {handle!r}", field="imageFormatHandle")
    return preset


def validate_definition(definition: str) -> None:
    """Check a preset definition: length, and every command through the modifier parser."""
    if not definition.strip():
        raise MissingParameter("urlModifier is empty", field="urlModifier")
    if len(definition) > MAX_DEFINITION:
        raise InvalidParameter(
            f"urlModifier has {len(definition)} characters; at most {MAX_DEFINITION} are allowed",
            field="urlModifier",
        )
    from jobengine.imaging.modifiers import parse_modifiers

    try:
        parse_modifiers(definition, presets={}, allow_unresolved_macros=True)
    except IpsFault as fault:
        fault.field = fault.field or "urlModifier"  # the parser names the token, not the field
        raise


@caller_faults
def save_image_format(
    company_handle: str | CompanyRef,
    name: str,
    url_modifier: str,
    image_format_handle: str | None = None,
) -> str:
    """Create or update a preset; returns its handle (``<company>|<id>``)."""
    problem = preset_name_problem(name)
    if problem is not None:
        raise InvalidParameter(problem, field="name")
    validate_definition(url_modifier)
    with get_runtime().store.write() as session:
        company = resolve_company(session, company_handle)
        clash = image_format_named(session, company.id, name)
        if image_format_handle:
            preset = _find(session, company, image_format_handle)
            if clash is not None and clash.id != preset.id:
                raise InvalidParameter(f"a preset named {name!r} exists already", field="name")
        elif clash is not None:
            preset = clash  # saving under an existing name replaces its definition
        else:
            preset = add_image_format(session, company.id)
        preset.name, preset.name_key = name, name.lower()
        preset.url_modifier, preset.updated_at = url_modifier, utcnow()
        session.flush()
        return _handle(company, preset)


@caller_faults
def get_image_formats(company_handle: str | CompanyRef) -> list[ImageFormatInfo]:
    """The company's presets, by name."""
    with get_runtime().store.read() as session:
        company = resolve_company(session, company_handle)
        rows = image_formats_by_name(session, company.id)
        return [ImageFormatInfo(_handle(company, p), p.name, p.url_modifier) for p in rows]


@caller_faults
def delete_image_format(company_handle: str | CompanyRef, image_format_handle: str) -> None:
    """Delete a preset."""
    with get_runtime().store.write() as session:
        company = resolve_company(session, company_handle)
        remove_preset(session, _find(session, company, image_format_handle))
