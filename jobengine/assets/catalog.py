"""A minimal IPS catalog: companies, users, folders and assets with their files.

Jobs act on assets; this module is how they come to exist (``jobengine assets import``) and how
handles are resolved. Passwords are hashed with scrypt (stdlib).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from collections.abc import Iterable, Sequence
from pathlib import Path, PurePosixPath

from sqlalchemy import Connection, bindparam, delete, or_, select
from sqlalchemy.orm import Session

from jobengine.assets.localfiles import Skipped, copy_capped, open_regular, plan_files
from jobengine.errors import InvalidCompany, InvalidParameter
from jobengine.handles import asset_handle, company_handle_forms
from jobengine.settings import get_settings
from jobengine.storage import Storage, safe_name
from jobengine.store.schema import (
    Asset,
    Company,
    Folder,
    ImageFormat,
    Membership,
    SetMember,
    User,
    utcnow,
)
from jobengine.store.users import CompanyLike, CompanyRef

__all__ = [
    "ASSET_TYPE_CODES",
    "RENDER_SUFFIXES",
    "RENDER_TYPES",
    "SET_TYPES",
    "USER_TYPES",
    "add_asset",
    "asset_named",
    "asset_type_for",
    "asset_type_of",
    "company_by_handle",
    "company_presets",
    "company_row",
    "create_company",
    "create_user",
    "ensure_folder",
    "hash_password",
    "import_files",
    "import_folder",
    "mark_for_publish",
    "put_asset_file",
    "record_file",
    "remove_assets",
    "resolve_company",
    "save_set",
    "set_members",
    "set_user_password",
    "user_by_handle",
    "verify_password",
]

USER_TYPES = (
    "IpsAdmin",
    "IpsCompanyAdmin",
    "IpsUser",
    "WebServiceUser",
    "TrialSiteAdmin",
    "TrialSiteUser",
    "ImagePortalAdmin",
    "ImagePortalUser",
    "ImagePortalContrib",
    "ImagePortalContribUser",
)

ASSET_TYPE_CODES = {
    "Image": 1,
    "Pdf": 2,
    "Video": 3,
    "PostScript": 4,
    "Illustrator": 5,
    "Template": 6,
    "File": 9,
    "ImageSet": 10,
    "RenderSet": 11,
    "SpinSet": 12,
    "MediaSet": 13,
    "MbrSet": 14,
    "VideoSet": 15,
    "ECatalog": 16,
    "OfferSet": 17,
    # Image Rendering's authored files (no IPS number is documented for them)
    "Vignette": 18,
    "Cabinet": 19,
    "WindowsCovering": 20,
}

# Image Rendering's files, made by Image Authoring: vignettes (.vnt), cabinet styles (.vnc) and
# window covering styles (.vnw), the IPS Asset Types' names. Their formats are not public, so no
# first bytes tell them: their suffix does (IPS: "upload them as you would any other file").
# ImageRenderingPublishJob checks what it can of their content.
RENDER_SUFFIXES = {".vnt": "Vignette", ".vnc": "Cabinet", ".vnw": "WindowsCovering"}
RENDER_TYPES = tuple(RENDER_SUFFIXES.values())

# Asset types ExportJob cannot export (the ExportJob page's list).
SET_TYPES = frozenset(
    {"ImageSet", "RenderSet", "SpinSet", "MediaSet", "MbrSet", "VideoSet", "ECatalog", "OfferSet"}
)

_MAGIC: Sequence[tuple[bytes, int, str]] = (
    (b"\xff\xd8\xff", 0, "Image"),
    (b"\x89PNG\r\n\x1a\n", 0, "Image"),
    (b"GIF87a", 0, "Image"),
    (b"GIF89a", 0, "Image"),
    (b"II*\x00", 0, "Image"),
    (b"MM\x00*", 0, "Image"),
    (b"BM", 0, "Image"),
    (b"8BPS", 0, "Image"),
    (b"%PDF-", 0, "Pdf"),
    (b"%!PS", 0, "PostScript"),
    (b"\xc5\xd0\xd3\xc6", 0, "PostScript"),
)


def asset_type_of(head: bytes) -> str:
    """The asset type told by a file's first bytes (never by its name)."""
    for magic, offset, kind in _MAGIC:
        if head[offset : offset + len(magic)] == magic:
            return kind
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "Image"
    if head[4:8] == b"ftyp":
        brand = head[8:12]
        return "Image" if brand in (b"avif", b"avis", b"heic", b"heix", b"mif1") else "Video"
    return "File"


def asset_type_for(name: str, head: bytes) -> str:
    """The asset type of a stored file: an Image Rendering file by its name's suffix (see
    :data:`RENDER_SUFFIXES`), any other by its first bytes (:func:`asset_type_of`)."""
    render = RENDER_SUFFIXES.get(PurePosixPath(name).suffix.lower())
    return render if render is not None else asset_type_of(head)


def hash_password(password: str) -> str:
    """An scrypt hash with its parameters and salt, as one string."""
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=2**14, r=8, p=1)
    return "scrypt$16384$8$1$" + base64.b64encode(salt + digest).decode()


def verify_password(password: str, stored: str) -> bool:
    """Check a password against hash_password's output in constant time."""
    try:
        scheme, n, r, p, blob = stored.split("$")
        raw = base64.b64decode(blob)
    except ValueError:
        return False
    if scheme != "scrypt":
        return False
    salt, digest = raw[:16], raw[16:]
    candidate = hashlib.scrypt(password.encode(), salt=salt, n=int(n), r=int(r), p=int(p))
    return hmac.compare_digest(candidate, digest)


_COMPANY_BY_HANDLE = select(Company).where(Company.handle == bindparam("handle"))


def company_by_handle(session: Session, handle: str) -> Company:
    """The company with ``handle`` (``47`` or ``c|47``); InvalidCompany (20000) if none."""
    for form in company_handle_forms(handle):
        company = session.scalar(_COMPANY_BY_HANDLE, {"handle": form})
        if company is not None:
            return company
    raise InvalidCompany(f"unknown company {handle!r}", field="companyHandle")


def resolve_company(session: Session, company: str | CompanyRef) -> CompanyLike:
    """The company a handle names (InvalidCompany if none), or the one the caller resolved
    already (not read again)."""
    return company if isinstance(company, CompanyRef) else company_by_handle(session, company)


def company_row(session: Session, company: str | CompanyRef) -> Company:
    """The company's row, by handle or by the id the caller resolved; InvalidCompany if none."""
    if not isinstance(company, CompanyRef):
        return company_by_handle(session, company)
    row = session.get(Company, company.id)
    if row is None:  # deleted since the caller resolved it
        raise InvalidCompany(f"unknown company {company.handle!r}", field="companyHandle")
    return row


def user_by_handle(session: Session, handle: str) -> User | None:
    """The user with this handle (or e-mail), if any."""
    return session.scalar(select(User).where((User.handle == handle) | (User.email == handle)))


def create_company(session: Session, handle: str, name: str) -> Company:
    """Add a company with its root folder; returns the existing one if the handle is taken."""
    existing = session.scalar(select(Company).where(Company.handle == handle))
    if existing is not None:
        return existing
    company = Company(handle=handle, name=name)
    session.add(company)
    session.flush()
    ensure_folder(session, company, "/")
    return company


def create_user(
    session: Session,
    email: str,
    password: str,
    user_type: str,
    companies: Iterable[Company],
    *,
    first_name: str = "",
    last_name: str = "",
) -> User:
    """Add a user (or update the one with this e-mail) and make it a member of ``companies``."""
    if user_type not in USER_TYPES:
        raise InvalidParameter(f"unknown user type {user_type!r}", field="userType")
    user = session.scalar(select(User).where(User.email == email))
    if user is None:
        user = User(email=email, handle=f"pending-{secrets.token_hex(8)}", user_type=user_type)
        session.add(user)
        session.flush()
        user.handle = f"u|{user.id}"
    user.user_type = user_type
    user.first_name, user.last_name = first_name, last_name
    set_user_password(user, password)
    for company in companies:
        if session.get(Membership, (user.id, company.id)) is None:
            session.add(Membership(user_id=user.id, company_id=company.id))
    session.flush()
    return user


def set_user_password(user: User, password: str) -> None:
    """Store the scrypt hash of the user's new password (the only place a password is written)."""
    user.password_hash = hash_password(password)


def ensure_folder(session: Session, company: Company, path: str) -> Folder:
    """The folder at ``path`` (``/`` is the company root), created when missing."""
    norm = "/" + "/".join(p for p in PurePosixPath("/" + path).parts[1:] if p not in ("", "."))
    if ".." in norm.split("/"):
        raise InvalidParameter(f"folder path escapes the company root: {path!r}", field="folder")
    folder = session.scalar(
        select(Folder).where(Folder.company_id == company.id, Folder.path == norm)
    )
    if folder is None:
        folder = Folder(company_id=company.id, path=norm)
        session.add(folder)
        session.flush()
    return folder


def add_asset(
    session: Session,
    storage: Storage,
    company: Company,
    source: Path,
    *,
    folder: str = "/",
    name: str | None = None,
    ready_for_publish: bool = False,
    max_bytes: int | None = None,
) -> Asset:
    """Copy a local file into storage and record it as an asset (replacing a same-named one).

    ``source`` must be a regular file (a FIFO or device is refused without blocking) of at most
    ``max_bytes`` (default ``JOBENGINE_UPLOAD_MAX_BYTES``, as for uploads): InvalidParameter or
    LimitExceeded otherwise, with nothing stored."""
    limit = get_settings().upload_max_bytes if max_bytes is None else max_bytes
    target_folder = ensure_folder(session, company, folder)
    asset_name = safe_name(name or source.name)
    key = f"{safe_name(company.handle)}/assets{target_folder.path.rstrip('/')}/{asset_name}"
    with open_regular(source) as fh:
        kind = asset_type_for(asset_name, fh.read(64))
        fh.seek(0)
        with storage.writer(key) as out:
            size = copy_capped(fh, out, limit, source.name)
    asset, _, _ = record_file(session, target_folder, asset_name, kind, key=key, size=size)
    if ready_for_publish:
        asset.publish_state = "MarkedForPublish"
    session.flush()
    return asset


# The asset row of a stored file, shared by add_asset (imports) and jobengine.assets.ingest
# (uploads).
def asset_named(session: Session, folder: Folder, name: str) -> Asset | None:
    """The asset called ``name`` in ``folder``, if any."""
    return _same_named(session, folder, name)


def record_file(
    session: Session, folder: Folder, name: str, asset_type: str, *, key: str, size: int
) -> tuple[Asset, str | None, bool]:
    """Point the asset ``name`` in ``folder`` at the stored file ``key``: created when missing,
    else replaced in place (same handle, its type, size and ``updated_at`` renewed, publish
    state untouched). Returns the asset, the file key it held before if another (to delete
    once committed) and whether it was created."""
    asset = _same_named(session, folder, name)
    created = asset is None
    if asset is None:
        asset = _new_asset(session, folder, name, asset_type)
    old_key = asset.file_key if asset.file_key not in (None, key) else None
    asset.type, asset.file_key, asset.size, asset.updated_at = asset_type, key, size, utcnow()
    session.flush()
    return asset, old_key, created


def add_set(session: Session, company: Company, name: str, set_type: str) -> Asset:
    """Record a set asset (it has no file of its own)."""
    if set_type not in SET_TYPES:
        raise InvalidParameter(f"{set_type!r} is not a set type", field="type")
    root = ensure_folder(session, company, "/")
    asset = Asset(company_id=company.id, folder_id=root.id, name=name, type=set_type)
    asset.handle = f"pending-{secrets.token_hex(8)}"
    session.add(asset)
    session.flush()
    asset.handle = asset_handle(company.id, ASSET_TYPE_CODES[set_type], asset.id)
    return asset


def _same_named(session: Session, folder: Folder, name: str) -> Asset | None:
    return session.scalar(
        select(Asset).where(
            Asset.company_id == folder.company_id, Asset.folder_id == folder.id, Asset.name == name
        )
    )


def _new_asset(session: Session, folder: Folder, name: str, asset_type: str) -> Asset:
    asset = Asset(company_id=folder.company_id, folder_id=folder.id, name=name, type=asset_type)
    asset.handle = f"pending-{secrets.token_hex(8)}"
    session.add(asset)
    session.flush()
    asset.handle = asset_handle(folder.company_id, ASSET_TYPE_CODES[asset_type], asset.id)
    return asset


def mark_for_publish(asset: Asset) -> None:
    """readyForPublish: an asset not marked becomes ``MarkedForPublish`` (``Published`` stays)."""
    if asset.publish_state not in ("MarkedForPublish", "Published"):
        asset.publish_state = "MarkedForPublish"


def put_asset_file(
    session: Session,
    folder: Folder,
    name: str,
    asset_type: str,
    *,
    key: str,
    size: int,
    derived_from: int | None = None,
    ready_for_publish: bool = False,
) -> tuple[Asset, str | None]:
    """Record the stored file ``key`` as the asset ``name`` in ``folder``; returns the asset and
    the file key it held before, if another (for the caller to delete once committed).

    A same-named asset of the same type is replaced in place (same handle, publish state kept
    unless ``ready_for_publish``); one of another type is in the way: InvalidParameter.
    """
    asset = _same_named(session, folder, name)
    if asset is None:
        asset = _new_asset(session, folder, name, asset_type)
    elif asset.type != asset_type:
        raise InvalidParameter(
            f"an asset named {name!r} of type {asset.type} is in the way", field="name"
        )
    old_key = asset.file_key if asset.file_key != key else None
    asset.file_key, asset.size, asset.updated_at = key, size, utcnow()
    asset.derived_from = derived_from
    if ready_for_publish:
        mark_for_publish(asset)
    session.flush()
    return asset, old_key


def save_set(
    session: Session,
    folder: Folder,
    name: str,
    set_type: str,
    members: Sequence[Asset],
    *,
    derived_from: int | None = None,
    ready_for_publish: bool = False,
) -> Asset:
    """Create the set ``name`` in ``folder``, or replace the members of the one there, with
    ``members`` in this order. A same-named asset that is not such a set: InvalidParameter."""
    if set_type not in SET_TYPES:
        raise InvalidParameter(f"{set_type!r} is not a set type", field="type")
    found = _same_named(session, folder, name)
    if found is not None and found.type != set_type:
        raise InvalidParameter(
            f"an asset named {name!r} of type {found.type} is in the way", field="name"
        )
    asset = found or _new_asset(session, folder, name, set_type)
    session.execute(delete(SetMember).where(SetMember.set_id == asset.id))
    session.add_all(
        SetMember(set_id=asset.id, position=n, member_id=m.id) for n, m in enumerate(members)
    )
    asset.updated_at, asset.derived_from = utcnow(), derived_from
    if ready_for_publish:
        mark_for_publish(asset)
    session.flush()
    return asset


def set_members(session: Session, set_asset: Asset) -> list[Asset]:
    """The members of a set asset, in order."""
    return list(
        session.scalars(
            select(Asset)
            .join(SetMember, SetMember.member_id == Asset.id)
            .where(SetMember.set_id == set_asset.id)
            .order_by(SetMember.position)
        )
    )


def remove_assets(session: Session, assets: Sequence[Asset]) -> list[str]:
    """Delete these assets and their set memberships (the sets close up the gaps); returns their
    file keys, for the caller to delete from storage once committed."""
    ids = [a.id for a in assets]
    if not ids:
        return []
    touched = set(
        session.scalars(select(SetMember.set_id).where(SetMember.member_id.in_(ids)).distinct())
    )
    session.execute(
        delete(SetMember).where(or_(SetMember.member_id.in_(ids), SetMember.set_id.in_(ids)))
    )
    for set_id in sorted(touched - set(ids)):
        kept = session.scalars(
            select(SetMember.member_id)
            .where(SetMember.set_id == set_id)
            .order_by(SetMember.position)
        ).all()
        session.execute(delete(SetMember).where(SetMember.set_id == set_id))
        session.add_all(
            SetMember(set_id=set_id, position=n, member_id=m) for n, m in enumerate(kept)
        )
    keys = [a.file_key for a in assets if a.file_key]
    for asset in assets:
        session.delete(asset)
    session.flush()
    return keys


def import_files(
    session: Session,
    storage: Storage,
    company: Company,
    paths: Iterable[Path],
    *,
    folder: str = "/",
    ready_for_publish: bool = False,
    skipped: list[Skipped] | None = None,
    max_bytes: int | None = None,
) -> list[Asset]:
    """Import files (folders are walked) as assets of ``company``, under the rules of
    :mod:`jobengine.assets.localfiles`: regular files only, at most ``JOBENGINE_UPLOAD_MAX_BYTES``
    each (or ``max_bytes``), symlinks in a folder only to files inside it. Entries of a folder
    that are left out are appended to ``skipped``; a path named on its own that cannot be
    imported raises before anything is stored."""
    limit = get_settings().upload_max_bytes if max_bytes is None else max_bytes
    files, left_out = plan_files(paths, limit)
    if skipped is not None:
        skipped.extend(left_out)
    return [
        add_asset(
            session,
            storage,
            company,
            file.path,
            folder=import_folder(folder, file.subfolder),
            name=file.name,
            ready_for_publish=ready_for_publish,
            max_bytes=limit,
        )
        for file in files
    ]


def import_folder(folder: str, subfolder: str) -> str:
    """The catalog folder of a file found in ``subfolder`` of a folder imported into ``folder``."""
    return f"{folder.rstrip('/')}/{subfolder}" if subfolder else folder


def company_presets(db: Session | Connection, company_id: int) -> dict[str, str]:
    """Name (lower case) -> definition, for expanding ``$name$`` macros in a conversion."""
    rows = db.execute(
        select(ImageFormat.name_key, ImageFormat.url_modifier).where(
            ImageFormat.company_id == company_id
        )
    ).all()
    return {str(name): str(definition) for name, definition in rows}
