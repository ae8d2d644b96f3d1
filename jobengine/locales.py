"""gettext catalogs (``<lang>/LC_MESSAGES/jobengine.po``) of job e-mails
(``jobengine.notices.email``) and job log messages (``jobengine.i18n.LogMessage``), and their
compiler.

The ``.mo`` files are generated from the ``.po`` files and shipped next to them; after editing a
``.po`` file run ``python -m jobengine.locales`` (stdlib only, no Babel or GNU gettext needed). A
test checks that every ``.mo`` file matches its ``.po`` file and that each catalog translates every
message of ``jobengine.pot``.
"""

from __future__ import annotations

import ast
import struct
import sys
from pathlib import Path

from jobengine.shipped import config_dir

__all__ = ["DOMAIN", "LOCALE_DIR", "catalogs", "compile_po", "parse_po"]

DOMAIN = "jobengine"
LOCALE_DIR = config_dir() / "locale"


def parse_po(text: str) -> dict[str, str]:
    """The ``msgid -> msgstr`` pairs of a ``.po`` file (no plurals or contexts; header included)."""
    messages: dict[str, str] = {}
    msgid: list[str] = []
    msgstr: list[str] = []
    target: list[str] | None = None

    def flush() -> None:
        if target is not None:
            messages["".join(msgid)] = "".join(msgstr)

    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("msgid "):
            flush()
            msgid, msgstr, target = [], [], None
            target, line = msgid, line[6:]
        elif line.startswith("msgstr "):
            target, line = msgstr, line[7:]
        if target is None or not line.startswith('"'):
            raise ValueError(f"line {number}: cannot parse {raw!r}")
        target.append(ast.literal_eval(line))
    flush()
    return messages


def compile_po(text: str) -> bytes:
    """The ``.mo`` file of a ``.po`` file's translations, as ``msgfmt --no-hash`` writes it."""
    messages = {k: v for k, v in parse_po(text).items() if v}
    keys = sorted(messages)
    ids = [k.encode() for k in keys]
    strs = [messages[k].encode() for k in keys]
    key_table = 7 * 4
    value_table = key_table + len(keys) * 8
    offset = value_table + len(keys) * 8
    index: list[int] = []
    data = b""
    for blob in ids + strs:  # the key table, then the value table: (length, offset) pairs
        index += [len(blob), offset + len(data)]
        data += blob + b"\0"
    head = struct.pack("<7I", 0x950412DE, 0, len(keys), key_table, value_table, 0, offset)
    return head + struct.pack(f"<{len(index)}I", *index) + data


def catalogs() -> list[Path]:
    """Every ``.po`` file of the domain, one per language."""
    return sorted(LOCALE_DIR.glob(f"*/LC_MESSAGES/{DOMAIN}.po"))


def main() -> int:
    """Regenerate every ``.mo`` file from its ``.po`` file."""
    for po in catalogs():
        po.with_suffix(".mo").write_bytes(compile_po(po.read_text(encoding="utf-8")))
        sys.stdout.write(f"compiled {po.relative_to(LOCALE_DIR)}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
