"""Image presets (ImageFormat) and batch set presets (SetPreset) of a company: found by id or
by name (case-insensitive: ``name_key``), listed by name, added and removed, in the caller's
session. The rules (names, definitions, handles) are :mod:`jobengine.operations`'."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from jobengine.store.schema import ImageFormat, SetPreset

__all__ = [
    "add_image_format",
    "add_set_preset",
    "image_format_by_id",
    "image_format_named",
    "image_formats_by_name",
    "remove_preset",
    "set_preset_by_id",
    "set_preset_named",
    "set_presets_by_name",
]


def image_format_by_id(session: Session, preset_id: int) -> ImageFormat | None:
    """The image preset with this id (of any company), if any."""
    return session.get(ImageFormat, preset_id)


def image_format_named(session: Session, company_id: int, name: str) -> ImageFormat | None:
    """The company's image preset called ``name`` (ignoring case), if any."""
    return session.scalar(
        select(ImageFormat).where(
            ImageFormat.company_id == company_id, ImageFormat.name_key == name.lower()
        )
    )


def image_formats_by_name(session: Session, company_id: int) -> list[ImageFormat]:
    """The company's image presets, by name."""
    query = select(ImageFormat).where(ImageFormat.company_id == company_id)
    return list(session.scalars(query.order_by(ImageFormat.name_key)))


def add_image_format(session: Session, company_id: int) -> ImageFormat:
    """A new image preset of the company, added to the session for the caller to fill in."""
    preset = ImageFormat(company_id=company_id)
    session.add(preset)
    return preset


def set_preset_by_id(session: Session, preset_id: int) -> SetPreset | None:
    """The batch set preset with this id (of any company), if any."""
    return session.get(SetPreset, preset_id)


def set_preset_named(session: Session, company_id: int, name: str) -> SetPreset | None:
    """The company's batch set preset called ``name`` (ignoring case), if any."""
    return session.scalar(
        select(SetPreset).where(
            SetPreset.company_id == company_id, SetPreset.name_key == name.lower()
        )
    )


def set_presets_by_name(session: Session, company_id: int) -> list[SetPreset]:
    """The company's batch set presets, by name."""
    query = select(SetPreset).where(SetPreset.company_id == company_id)
    return list(session.scalars(query.order_by(SetPreset.name_key)))


def add_set_preset(session: Session, company_id: int) -> SetPreset:
    """A new batch set preset of the company, added to the session for the caller to fill in."""
    preset = SetPreset(company_id=company_id)
    session.add(preset)
    return preset


def remove_preset(session: Session, preset: ImageFormat | SetPreset) -> None:
    """Delete an image or batch set preset."""
    session.delete(preset)
