"""gettext catalogs (``<lang>/LC_MESSAGES/jobengine.po``) of job e-mails
(``jobengine.notices.email``) and job log messages (``jobengine.i18n.LogMessage``), and their
compiler.

A message is added in one place per language: its entry in each ``.po`` file (and, in code,
the ``LogMessage`` type or a ``_()`` mark of ``jobengine.notices.email``). The ``.mo`` files and the
template ``jobengine.pot`` (the English catalog's message ids) are generated and shipped next to
them: after editing a ``.po`` file run ``python -m jobengine.locales`` (stdlib only, no Babel or GNU
gettext needed). Tests check that every ``.mo`` file and the template match their sources, and
that each catalog translates exactly the messages the code uses.
"""

from __future__ import annotations

import ast
import struct
import sys
from pathlib import Path

from jobengine.shipped import config_dir

__all__ = ["DOMAIN", "LOCALE_DIR", "catalogs", "compile_po", "parse_po", "template_of"]

DOMAIN = "jobengine"
LOCALE_DIR = config_dir() / "locale"
TEMPLATE_SOURCE = "en"  # the catalog whose message ids make the template
_TEMPLATE_HEAD = """\
# The template of jobengine's job e-mails (jobengine/notices/email.py) and job log messages.
# Generated from the English catalog by python -m jobengine.locales: do not edit.
msgid ""
msgstr ""
"Project-Id-Version: jobengine 0.1.0\\n"
"MIME-Version: 1.0\\n"
"Content-Type: text/plain; charset=UTF-8\\n"
"Content-Transfer-Encoding: 8bit\\n"
"""


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


def _quoted(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def template_of(po_text: str) -> str:
    """The template (``jobengine.pot``) of a catalog: its message ids in order, untranslated."""
    ids = [msgid for msgid in parse_po(po_text) if msgid]
    return _TEMPLATE_HEAD + "".join(f'\nmsgid {_quoted(m)}\nmsgstr ""\n' for m in ids)


def catalogs() -> list[Path]:
    """Every ``.po`` file of the domain, one per language."""
    return sorted(LOCALE_DIR.glob(f"*/LC_MESSAGES/{DOMAIN}.po"))


def main() -> int:
    """Regenerate every ``.mo`` file from its ``.po`` file, and the template."""
    for po in catalogs():
        text = po.read_text(encoding="utf-8")
        po.with_suffix(".mo").write_bytes(compile_po(text))
        sys.stdout.write(f"compiled {po.relative_to(LOCALE_DIR)}\n")
        if po.parent.parent.name == TEMPLATE_SOURCE:
            (LOCALE_DIR / f"{DOMAIN}.pot").write_text(template_of(text), encoding="utf-8")
            sys.stdout.write(f"wrote {DOMAIN}.pot\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
