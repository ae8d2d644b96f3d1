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

from sqlalchemy import Connection, bindparam, select
from sqlalchemy.orm import Session

from jobengine.errors import InvalidCompany, InvalidParameter
from jobengine.handles import asset_handle, company_handle_forms
from jobengine.storage import Storage, safe_name
from jobengine.store.schema import Asset, Company, Folder, ImageFormat, Membership, User, utcnow

__all__ = [
    "ASSET_TYPE_CODES",
    "SET_TYPES",
    "USER_TYPES",
    "add_asset",
    "asset_type_of",
    "company_by_handle",
    "company_presets",
    "create_company",
    "create_user",
    "ensure_folder",
    "hash_password",
    "import_files",
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
}

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
    user.password_hash = hash_password(password)
    for company in companies:
        if session.get(Membership, (user.id, company.id)) is None:
            session.add(Membership(user_id=user.id, company_id=company.id))
    session.flush()
    return user


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
) -> Asset:
    """Copy a local file into storage and record it as an asset (replacing a same-named one)."""
    with source.open("rb") as fh:
        kind = asset_type_of(fh.read(64))
    target_folder = ensure_folder(session, company, folder)
    asset_name = safe_name(name or source.name)
    key = f"{safe_name(company.handle)}/assets{target_folder.path.rstrip('/')}/{asset_name}"
    size = storage.put_file(source, key)
    asset = session.scalar(
        select(Asset).where(
            Asset.company_id == company.id,
            Asset.folder_id == target_folder.id,
            Asset.name == asset_name,
        )
    )
    if asset is None:
        asset = Asset(company_id=company.id, folder_id=target_folder.id, name=asset_name)
        asset.handle = f"pending-{secrets.token_hex(8)}"
        session.add(asset)
    asset.type, asset.file_key, asset.size, asset.updated_at = kind, key, size, utcnow()
    if ready_for_publish:
        asset.publish_state = "MarkedForPublish"
    session.flush()
    asset.handle = asset_handle(company.id, ASSET_TYPE_CODES[kind], asset.id)
    return asset


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


def import_files(
    session: Session,
    storage: Storage,
    company: Company,
    paths: Iterable[Path],
    *,
    folder: str = "/",
    ready_for_publish: bool = False,
) -> list[Asset]:
    """Import files (directories are walked) as assets of ``company``."""
    assets: list[Asset] = []
    for path in paths:
        files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        for file in files:
            sub = folder
            if path.is_dir() and file.parent != path:
                sub = f"{folder.rstrip('/')}/{file.parent.relative_to(path).as_posix()}"
            assets.append(
                add_asset(
                    session, storage, company, file, folder=sub, ready_for_publish=ready_for_publish
                )
            )
    return assets


def company_presets(db: Session | Connection, company_id: int) -> dict[str, str]:
    """Name (lower case) -> definition, for expanding ``$name$`` macros in a conversion."""
    rows = db.execute(
        select(ImageFormat.name_key, ImageFormat.url_modifier).where(
            ImageFormat.company_id == company_id
        )
    ).all()
    return {str(name): str(definition) for name, definition in rows}
