"""The Image Serving query parser: ``cmd=value&$macro$&$var=value&.comment`` -> ImageRequest.

Rules (Image Serving HTTP protocol, see docs/imaging.md):

* Split on ``&`` (a leading ``?`` or ``&`` and empty parts are ignored), drop ``.comments``.
* ``$name$`` expands a macro (image preset) in place, recursively, with cycle detection and a
  depth limit. Because expansion is positional and the last command wins, a command before the
  macro is overridden by the macro's value and a command after it wins.
* Command, macro and variable names are case-insensitive; values keep their case.
* ``$var=value`` defines a variable; ``$var$`` in a later command value is replaced by it (not
  recursively). Each value is URL-decoded exactly once.
* Every command has a typed grammar (:mod:`jobengine.imaging.grammar`); an unknown command or a
  bad value raises ``InvalidParameter`` naming the exact token.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, fields, replace
from typing import Any
from urllib.parse import unquote

from jobengine.errors import InvalidParameter, NotSupported
from jobengine.imaging.grammar import COMMANDS, UNSUPPORTED_COMMANDS, BadToken
from jobengine.imaging.request import ImageRequest
from jobengine.model.presets import MACRO_NAME
from jobengine.shipped import config_dir

__all__ = [
    "MAX_MACRO_DEPTH",
    "MAX_QUERY_CHARS",
    "default_presets",
    "export_request",
    "format_query",
    "parse_modifiers",
]

MAX_MACRO_DEPTH = 8
MAX_QUERY_CHARS = 16_384
MAX_TOKENS = 1_000
_NAME = re.compile(r"[A-Za-z0-9_.-]+")
_MACRO = re.compile(rf"\$({MACRO_NAME})\$")  # preset names are free text (model.presets)
_BARE_MACRO = re.compile(MACRO_NAME)
_VAR_REF = re.compile(r"(\$[A-Za-z0-9_.-]+\$)")
_DEFAULTS = ImageRequest()
_LAYOUT = " \t\r\n"


@dataclass(frozen=True)
class _Token:
    """One modifier after macro expansion; ``source`` is the macro it came from ('' = request)."""

    text: str
    source: str


def _split(query: str) -> list[str]:
    if len(query) > MAX_QUERY_CHARS:
        raise InvalidParameter(
            f"modifier string has {len(query)} characters; at most {MAX_QUERY_CHARS} are allowed"
        )
    text = query.strip()
    text = text[1:] if text.startswith("?") else text
    # A definition pasted into XML is often wrapped (Adobe's saveImageFormat example breaks
    # its urlModifier across lines): white space around a modifier is layout, not content.
    parts = (part.strip(_LAYOUT) for part in text.split("&"))
    return [part for part in parts if part and not part.startswith(".")]


class _Expander:
    """Expands ``$macro$`` tokens recursively against a case-insensitive preset table."""

    def __init__(self, presets: Mapping[str, str], allow_unresolved: bool) -> None:
        self.presets = {name.lower(): text for name, text in presets.items()}
        self.allow_unresolved = allow_unresolved
        self.count = 0

    def expand(self, query: str, stack: tuple[str, ...] = ()) -> Iterator[_Token]:
        for part in _split(query):
            macro = _MACRO.fullmatch(part)
            if macro is None:
                self.count += 1
                if self.count > MAX_TOKENS:
                    raise InvalidParameter(f"modifiers expand to more than {MAX_TOKENS} commands")
                yield _Token(part, stack[-1] if stack else "")
                continue
            yield from self._macro(part, macro.group(1), stack)

    def _macro(self, token: str, name: str, stack: tuple[str, ...]) -> Iterator[_Token]:
        key = name.lower()
        if key in stack:
            chain = " -> ".join(f"${n}$" for n in (*stack, key))
            raise InvalidParameter(f"macro cycle in {token!r}: {chain}")
        if len(stack) >= MAX_MACRO_DEPTH:
            raise InvalidParameter(f"macro {token!r} nests deeper than {MAX_MACRO_DEPTH} levels")
        definition = self.presets.get(key)
        if definition is None:
            if self.allow_unresolved:
                return
            raise InvalidParameter(f"unknown macro (image preset) {token!r}")
        yield from self.expand(definition, (*stack, key))


def _decode_value(raw: str, variables: Mapping[str, str]) -> str:
    """URL-decode once and substitute defined ``$var$`` references with their (decoded) values."""
    out = []
    for piece in _VAR_REF.split(raw):
        name = piece[1:-1].lower()
        defined = _VAR_REF.fullmatch(piece) is not None and name in variables
        out.append(variables[name] if defined else unquote(piece))
    return "".join(out)


class _Builder:
    """Applies commands in order (the last one wins) and remembers where each field came from."""

    def __init__(self) -> None:
        self.values: dict[str, Any] = {}
        self.origin: dict[str, str] = {}
        self.variables: dict[str, str] = {}

    def apply(self, token: _Token) -> None:
        name, eq, raw = token.text.partition("=")
        if name.startswith("$"):
            self._define(token.text, name[1:], raw)
            return
        key = name.lower()
        command = COMMANDS.get(key)
        if command is None:
            if key in UNSUPPORTED_COMMANDS:
                raise NotSupported(
                    f"command {name!r} in {token.text!r} is not supported by conversions"
                )
            raise InvalidParameter(f"unknown command {name!r} in {token.text!r}")
        value = _decode_value(raw, self.variables)
        try:
            parsed = command.parse(value.split(",") if eq else [])
        except BadToken as bad:
            raise InvalidParameter(f"{token.text}: {bad.token!r} {bad.why}") from None
        self.values[command.field] = parsed
        self.origin[command.field] = token.source

    def _define(self, text: str, name: str, raw: str) -> None:
        if not _NAME.fullmatch(name):
            raise InvalidParameter(f"bad variable name {name!r} in {text!r}")
        self.variables[name.lower()] = unquote(raw)

    def build(self) -> ImageRequest:
        return replace(_DEFAULTS, **self.values)


def _build(query: str, presets: Mapping[str, str], allow_unresolved: bool) -> _Builder:
    builder = _Builder()
    for token in _Expander(presets, allow_unresolved).expand(query):
        builder.apply(token)
    return builder


def parse_modifiers(
    query: str,
    presets: Mapping[str, str] | None = None,
    *,
    allow_unresolved_macros: bool = False,
) -> ImageRequest:
    """Parse an Image Serving modifier string (macros expanded from ``presets``).

    ``allow_unresolved_macros`` skips unknown ``$name$`` macros instead of failing (for checking a
    preset definition that refers to presets saved later).
    """
    return _build(query, presets or {}, allow_unresolved_macros).build()


def export_request(
    is_modifier: str | None, macro: str | None, presets: Mapping[str, str]
) -> ImageRequest:
    """The conversion request of an ExportJob with ``fmt=convert``.

    The macro (``$name$``, a preset of the company) is expanded first and ``is_modifier`` is
    applied after it, so is_modifier's commands win, except the output format: when both are
    given and the macro sets ``fmt``, the macro's format is used whatever is_modifier says.
    Formats this server cannot produce at all raise ``NotSupported``.
    """
    macro_query = ""
    if macro and macro.strip():
        macro_query = macro.strip()
        if _BARE_MACRO.fullmatch(macro_query):
            macro_query = f"${macro_query}$"
    query = "&".join(q for q in (macro_query, is_modifier or "") if q)
    builder = _build(query, presets, False)
    req = builder.build()
    if macro_query and is_modifier:
        macro_fmt = _build(macro_query, presets, False).values.get("fmt")
        if macro_fmt is not None:
            req = replace(req, fmt=macro_fmt)
    if not req.spec.supported:
        raise NotSupported(f"output format {req.fmt.format!r} is not supported by conversions")
    return req


def format_query(req: ImageRequest) -> str:
    """The canonical modifier string of ``req`` (only values that differ from the defaults);
    ``parse_modifiers(format_query(req)) == req``."""
    out = []
    names = {f.name for f in fields(ImageRequest)}
    for command in COMMANDS.values():
        assert command.field in names
        value = getattr(req, command.field)
        if value == getattr(_DEFAULTS, command.field):
            continue
        text = command.emit(value)
        if text is not None:
            out.append(f"{command.name}={_encode(text)}")
    return "&".join(out)


def _encode(text: str) -> str:
    return text.replace("%", "%25").replace("&", "%26").replace("$", "%24")


def default_presets() -> dict[str, str]:
    """The default company presets shipped in ``config/presets.json`` (name -> definition)."""
    data = (config_dir() / "presets.json").read_text(encoding="utf-8")
    presets = json.loads(data)["presets"]
    return {str(name): str(definition) for name, definition in presets.items()}
