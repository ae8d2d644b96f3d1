"""AutomatedSetGenerationJob: the listed assets grouped into sets by the company's batch set
presets (``autoSetCreationOptions/autoSetsArray``; the rules are :mod:`jobengine.assets.setrules`).

Planning runs every preset on every listed Image asset once, in the job's order: one item per
(preset, set name) group, in the presets' order, then the sets' first appearance. An asset no
preset matches gets an ``UploadWarning`` row, as does one that is not an Image (sets hold
images) or no longer exists; a set name a preset earlier in the list already makes is skipped
with a warning (the earlier preset wins). Those rows are written while planning: they are in the
log but not in the file counters; the run's output counts the unmatched assets.

An item groups the assets again (so it sees renames since planning) and, in one transaction,
creates the set in ``destFolder`` (default the company root) or replaces the members of the
same-named set there, in the rule's order (:func:`jobengine.assets.catalog.save_set`, the set
mechanism RipPdfsJob's eCatalogs use): the same handle every time, no duplicates, so an item run
again does the same. The set's name goes through the upload rules for names
(:func:`jobengine.assets.ingest.clean_name`: characters other than letters A-Z a-z, digits, ``.``,
``_``, ``-`` and space become ``_``; control characters, ``/`` and names over 200 characters
are refused with an error row). ``readyForPublish`` marks the sets for publish. A same-named
asset that is not a set of the preset's type is in the way: an error row for that set, the run
goes on.

Log types are the upload ones (IPS has none of its own for set generation; Scene7 generates sets
as part of an upload): BeginUpload, UploadSuccess, UploadWarning, UploadError, EndUpload.
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection, Sequence

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from jobengine.assets.catalog import ensure_folder, save_set
from jobengine.assets.ingest import BadPath, clean_folder, clean_name
from jobengine.assets.setrules import SetRule, group_assets, parse_set_preset_handle, rule_of
from jobengine.errors import IllegalCompany, InvalidParameter, IpsFault, LimitExceeded
from jobengine.handles import company_segment
from jobengine.i18n import LogMessage
from jobengine.kinds.base import (
    AssetRef,
    Finished,
    ItemOutcome,
    JobKindHandler,
    PlannedItem,
    RunContext,
    SubmitReads,
    unique_handles,
)
from jobengine.kinds.processing_options import refuse_unsupported
from jobengine.model import AutomatedSetGenerationJob, JobKind
from jobengine.store.schema import Asset, Company, SetPreset

__all__ = ["MAX_PRESETS", "AutomatedSetGenerationKind", "item_key", "parse_item_key"]

MAX_PRESETS = 100  # set presets one job runs
_SUCCESS, _ERROR, _WARNING = "UploadSuccess", "UploadError", "UploadWarning"
_ELEMENT = "automatedSetGenerationJob"
_PRESETS_FIELD = f"{_ELEMENT}/autoSetCreationOptions/autoSetsArray"
_UNMATCHED: LogMessage = "no set preset matches {name}"


def item_key(preset_id: int, set_name: str) -> str:
    """An item's key: the preset, a digest of the set name, and the name (cut) to read."""
    digest = hashlib.sha256(set_name.encode("utf-8", "surrogatepass")).hexdigest()[:24]
    return f"{preset_id}|{digest}|{set_name[:300]}"


def parse_item_key(key: str) -> tuple[int, str, str]:
    """(preset id, set name digest, set name as far as the key holds it)."""
    preset_id, digest, name = key.split("|", 2)
    return int(preset_id), digest, name


def _digest(set_name: str) -> str:
    return item_key(0, set_name).split("|")[1]


def _final_name(set_name: str) -> str | None:
    """The asset name a set gets (as uploads name files:
    :func:`jobengine.assets.ingest.clean_name`), None when the name is refused."""
    try:
        return clean_name(set_name)
    except BadPath:
        return None


def _dest_folder(job: AutomatedSetGenerationJob) -> str:
    try:
        return clean_folder(job.dest_folder or "/")
    except BadPath as exc:
        raise InvalidParameter(f"destFolder {exc.reason}", field=f"{_ELEMENT}/destFolder") from None


def _preset_ids(job: AutomatedSetGenerationJob) -> list[int]:
    handles = unique_handles(job.auto_set_creation_options.auto_sets_array or ())
    if len(handles) > MAX_PRESETS:
        raise LimitExceeded(
            f"{_PRESETS_FIELD} holds {len(handles)} set presets; at most {MAX_PRESETS} are allowed",
            field=_PRESETS_FIELD,
        )
    return [parse_set_preset_handle(h, _PRESETS_FIELD)[1] for h in handles]


def _images(session: Session, company_id: int, handles: Sequence[str]) -> list[Asset]:
    """The company's assets with these handles, in the handles' order (missing ones left out)."""
    rows = session.scalars(
        select(Asset).where(Asset.company_id == company_id, Asset.handle.in_(list(handles)))
    ).all()
    by_handle = {a.handle: a for a in rows}
    return [by_handle[h] for h in handles if h in by_handle]


def _presets(session: Session, company_id: int, ids: Sequence[int]) -> dict[int, SetPreset]:
    rows = session.scalars(
        select(SetPreset).where(SetPreset.company_id == company_id, SetPreset.id.in_(list(ids)))
    ).all()
    return {p.id: p for p in rows}


class AutomatedSetGenerationKind(JobKindHandler[AutomatedSetGenerationJob]):
    kind = JobKind.AUTOMATED_SET_GENERATION
    job_type = "AutomatedSetGeneration"
    begin_log = "BeginUpload"  # IPS has no Begin/EndAutomatedSetGeneration
    end_log = "EndUpload"
    honoured: Collection[str] = frozenset(
        {
            "asset_handle_array",
            "dest_folder",
            "ready_for_publish",
            "auto_set_creation_options",
            "email_setting",
        }
    )

    def asset_handles(self, job: AutomatedSetGenerationJob) -> list[str]:
        return unique_handles(job.asset_handle_array)

    def check(self, reads: SubmitReads, job: AutomatedSetGenerationJob) -> None:
        refuse_unsupported(self.element, job, self.honoured)
        _dest_folder(job)
        ids = _preset_ids(job)
        owners = reads.set_preset_owners(ids)
        company = company_segment(reads.company_handle)
        handles = unique_handles(job.auto_set_creation_options.auto_sets_array or ())
        for handle, preset_id in zip(handles, ids, strict=True):
            owner = owners.get(preset_id)
            segment = parse_set_preset_handle(handle, _PRESETS_FIELD)[0]
            if owner is not None and owner != reads.company_id:
                raise IllegalCompany(
                    f"set preset {handle!r} belongs to another company", field=_PRESETS_FIELD
                )
            if owner is None or segment != company:
                raise InvalidParameter(f"unknown set preset {handle!r}", field=_PRESETS_FIELD)
        path = f"{self.element}/assetHandleArray"
        reads.check_handles(unique_handles(job.asset_handle_array), path)

    def plan(self, ctx: RunContext[AutomatedSetGenerationJob]) -> list[PlannedItem]:
        job = ctx.job
        handles = unique_handles(job.asset_handle_array)
        ids = _preset_ids(job)
        with ctx.runtime.store.read() as session:
            found = _images(session, ctx.company_id, handles)
            presets = _presets(session, ctx.company_id, ids)
        present = {a.handle for a in found}
        missing = [h for h in handles if h not in present]
        images = [a for a in found if a.type == "Image"]
        others = [a for a in found if a.type != "Image"]
        broken: list[tuple[str, str]] = []  # (preset, reason)
        doubles: list[tuple[str, str]] = []  # (set name, preset)
        items: list[PlannedItem] = []
        matched: set[str] = set()
        made: set[str] = set()
        pairs = [(a.handle, a.name) for a in images]
        for preset_id in ids:
            preset = presets.get(preset_id)
            if preset is None:
                broken.append((str(preset_id), "it was deleted"))
                continue
            try:
                rule = rule_of(preset)
            except IpsFault as exc:
                broken.append((preset.name, exc.reason))
                continue
            for set_name, members in group_assets(rule, pairs).items():
                matched.update(m.handle for m in members)
                final = _final_name(set_name)
                if final is not None and final in made:
                    doubles.append((final, preset.name))
                    continue
                made.add(final or set_name)
                items.append(PlannedItem(key=item_key(preset_id, set_name), label=set_name))
        unmatched = [a for a in images if a.handle not in matched]
        if missing or others or broken or doubles or unmatched:
            for handle in missing:
                gone: LogMessage = "skipped {handle}: the asset no longer exists"
                ctx.log(_WARNING, gone, asset=AssetRef(handle=handle), handle=handle)
            for asset in others:
                ctx.log(
                    _WARNING,
                    "skipped {name}: {type} assets cannot be set members",
                    asset=AssetRef.of(asset),
                    name=asset.name,
                    type=asset.type,
                )
            for preset_name, reason in broken:
                ctx.log(
                    _ERROR,
                    "cannot run set preset {preset}: {reason}",
                    preset=preset_name,
                    reason=reason,
                )
            double: LogMessage = (
                "skipped set {name} of set preset {preset}: an earlier preset of the job makes it"
            )
            for set_name, preset_name in doubles:
                ctx.log(
                    _WARNING,
                    double,
                    asset=AssetRef(name=set_name),
                    name=set_name,
                    preset=preset_name,
                )
            for asset in unmatched:
                ctx.log(
                    _WARNING,
                    "no set preset matches {name}",
                    asset=AssetRef.of(asset),
                    name=asset.name,
                )
        return items

    def process(self, ctx: RunContext[AutomatedSetGenerationJob], item: PlannedItem) -> ItemOutcome:
        preset_id, digest, label = parse_item_key(item.key)
        for attempt in range(2):
            try:
                with ctx.runtime.store.write() as session:
                    return self._make_set(ctx, session, preset_id, digest, label)
            except IntegrityError:  # a concurrent writer created the same-named set first
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def _make_set(
        self,
        ctx: RunContext[AutomatedSetGenerationJob],
        session: Session,
        preset_id: int,
        digest: str,
        label: str,
    ) -> ItemOutcome:
        job = ctx.job
        preset = _presets(session, ctx.company_id, [preset_id]).get(preset_id)
        if preset is None:
            gone = {"preset": str(preset_id), "reason": "it was deleted"}
            return ItemOutcome(
                "error", _ERROR, "cannot run set preset {preset}: {reason}", args=gone
            )
        rule: SetRule = rule_of(preset)
        images = [
            a
            for a in _images(session, ctx.company_id, unique_handles(job.asset_handle_array))
            if a.type == "Image"
        ]
        groups = group_assets(rule, [(a.handle, a.name) for a in images])
        found = next(((n, m) for n, m in groups.items() if _digest(n) == digest), None)
        ref = AssetRef(name=label, type=rule.set_type)
        if found is None:
            empty = {"name": label}
            return ItemOutcome(
                "warning", _WARNING, "set {name} has no members left", ref, args=empty
            )
        set_name, members = found
        try:
            name = clean_name(set_name)
        except BadPath as exc:
            bad = {"name": set_name, "reason": f"the set name {exc.reason}"}
            return ItemOutcome("error", _ERROR, "cannot make set {name}: {reason}", ref, args=bad)
        company = session.get(Company, ctx.company_id)
        assert company is not None
        by_handle = {a.handle: a for a in images}
        ordered = [by_handle[m.handle] for m in members]
        try:
            folder = ensure_folder(session, company, _dest_folder(job))
            existing = session.scalar(
                select(func.count())
                .select_from(Asset)
                .where(Asset.folder_id == folder.id, Asset.name == name)
            )
            made = save_set(
                session,
                folder,
                name,
                rule.set_type,
                ordered,
                ready_for_publish=job.ready_for_publish is True,
            )
        except IpsFault as exc:
            failed = {"name": name, "reason": exc.reason}
            return ItemOutcome(
                "error", _ERROR, "cannot make set {name}: {reason}", ref, args=failed
            )
        result = {
            "set": made.handle,
            "name": name,
            "type": rule.set_type,
            "preset": preset.name,
            "members": [m.handle for m in members],
        }
        args = {"type": rule.set_type, "name": name, "members": len(members)}
        made_ref = AssetRef(name, rule.set_type, made.handle)
        if existing:
            replaced: LogMessage = "replaced {type} {name} with {members} member(s)"
            return ItemOutcome("success", _SUCCESS, replaced, made_ref, 0, result, args, "update")
        return ItemOutcome(
            "success",
            _SUCCESS,
            "made {type} {name} with {members} member(s)",
            made_ref,
            0,
            result,
            args,
        )

    def finish(self, ctx: RunContext[AutomatedSetGenerationJob], stopped: bool) -> Finished:
        made = [r for r in ctx.done_items() if r.get("set")]
        unmatched = ctx.logged(_UNMATCHED)
        return Finished(
            {
                "sets": len(made),
                "members": sum(len(r.get("members") or []) for r in made),
                "unmatched": unmatched,
            }
        )
