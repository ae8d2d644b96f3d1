"""Batch set presets (the set-generation scripts of AutomatedSetGenerationJob): save, list and
delete them.

A preset is a name (unique per company, case-insensitive, letters, digits, ``-``, ``_`` and
``.``, like image presets) and a rule (:class:`jobengine.assets.setrules.SetRule`, every field
checked when saved). Handles look like ``47|sp|12``: they are what ``autoSetCreationOptions/
autoSetsArray`` lists.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy.orm import Session

from jobengine.assets.catalog import resolve_company
from jobengine.assets.setrules import SetRule, parse_set_preset_handle, set_preset_handle
from jobengine.errors import IllegalCompany, InvalidParameter, caller_faults
from jobengine.handles import company_segment
from jobengine.runtime import get_runtime
from jobengine.store.presets import (
    add_set_preset,
    remove_preset,
    set_preset_by_id,
    set_preset_named,
    set_presets_by_name,
)
from jobengine.store.schema import SetPreset, utcnow
from jobengine.store.users import CompanyLike, CompanyRef

__all__ = [
    "SetPresetInfo",
    "delete_set_preset",
    "get_set_presets",
    "save_set_preset",
]

_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,255}$")  # a batch set preset's name (ours, not IPS's)
_FIELD = "setPresetHandle"


@dataclass(frozen=True)
class SetPresetInfo:
    """A batch set preset as the operations return it."""

    set_preset_handle: str
    name: str
    set_type: str
    pattern: str
    order: str
    views: tuple[str, ...]
    name_template: str


def _info(company: CompanyLike, preset: SetPreset) -> SetPresetInfo:
    return SetPresetInfo(
        set_preset_handle(company.handle, preset.id),
        preset.name,
        preset.set_type,
        preset.pattern,
        preset.member_order,
        tuple(preset.views),
        preset.name_template,
    )


def _find(session: Session, company: CompanyLike, handle: str) -> SetPreset:
    segment, number = parse_set_preset_handle(handle)
    if segment != company_segment(company.handle):
        raise IllegalCompany(f"set preset {handle!r} is not of company {company.handle!r}",
                             field=_FIELD)  # fmt: skip
    preset = set_preset_by_id(session, number)
    if preset is None or preset.company_id != company.id:
        raise InvalidParameter(f"unknown setPresetHandle {handle!r}", field=_FIELD)
    return preset


@caller_faults
def save_set_preset(
    company_handle: str | CompanyRef,
    name: str,
    set_type: str,
    pattern: str,
    *,
    order: str = "name",
    views: Sequence[str] = (),
    name_template: str = "{base}",
    set_preset_handle_: str | None = None,
) -> str:
    """Create or update a batch set preset; returns its handle (``<company>|sp|<id>``).

    Saving under an existing name replaces that preset's rule (same handle); with
    ``set_preset_handle_`` that preset is updated (and renamed)."""
    if not _NAME.match(name):
        raise InvalidParameter(
            f"set preset name {name[:80]!r} may only use letters, digits, '-', '_' and '.'",
            field="name",
        )
    rule = SetRule.build(set_type, pattern, order, views, name_template)
    with get_runtime().store.write() as session:
        company = resolve_company(session, company_handle)
        clash = set_preset_named(session, company.id, name)
        if set_preset_handle_:
            preset = _find(session, company, set_preset_handle_)
            if clash is not None and clash.id != preset.id:
                raise InvalidParameter(f"a set preset named {name!r} exists already", field="name")
        elif clash is not None:
            preset = clash
        else:
            preset = add_set_preset(session, company.id)
        preset.name, preset.name_key = name, name.lower()
        preset.set_type, preset.pattern, preset.member_order = (
            rule.set_type,
            rule.pattern,
            rule.order,
        )
        preset.views, preset.name_template = list(rule.views), rule.name_template
        preset.updated_at = utcnow()
        session.flush()
        return set_preset_handle(company.handle, preset.id)


@caller_faults
def get_set_presets(company_handle: str | CompanyRef) -> list[SetPresetInfo]:
    """The company's batch set presets, by name."""
    with get_runtime().store.read() as session:
        company = resolve_company(session, company_handle)
        rows = set_presets_by_name(session, company.id)
        return [_info(company, p) for p in rows]


@caller_faults
def delete_set_preset(company_handle: str | CompanyRef, handle: str) -> None:
    """Delete a batch set preset (the sets it made stay)."""
    with get_runtime().store.write() as session:
        company = resolve_company(session, company_handle)
        remove_preset(session, _find(session, company, handle))
