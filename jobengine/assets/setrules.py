"""Batch set presets: the rules AutomatedSetGenerationJob runs to group assets into sets.

A rule (one row of ``set_presets``, saved by :mod:`jobengine.operations.set_presets`) says

* which set to build: ``ImageSet`` or ``SpinSet``;
* how an asset's name maps to its set: ``pattern``, a regular expression that must match the
  whole name without its extension (``shoe_front.jpg`` -> ``shoe_front``) and has a named group
  ``base``, the set's base name; it may have a group ``view`` and a group ``seq``;
* how members are ordered (``order``): ``view`` by the position of the ``view`` group's text in
  ``views`` (case-insensitive; views not listed come after, by name), ``sequence`` by the number
  in the ``seq`` group (non-numeric after, by name), or ``name`` by asset name;
* how the set is named: ``name_template``, ``{base}`` and the characters asset names keep
  (letters A-Z a-z, digits, ``.``, ``_``, ``-``, space), e.g. ``{base}_set``; the name is
  checked as an asset name again when the set is made.

The pattern is operator-supplied but treated as hostile. Python's ``re`` has no timeout, so the
matching is bounded instead of timed: a pattern is at most :data:`MAX_PATTERN` characters; it
may not hold backreferences, conditionals or lookarounds; a variable-length repeat may not
contain another variable-length repeat or an alternation (``(a+)+``, ``(a|ab)*``: the nested
quantifiers of catastrophic backtracking); at most :data:`MAX_VARIABLE_REPEATS` variable-length
repeats in all; and a name longer than :data:`MAX_SUBJECT` characters is never matched (it is
reported as unmatched). The worst case is then polynomial in a bounded input: a few milliseconds.
"""

from __future__ import annotations

import importlib
import re
import string
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Final

from jobengine.errors import InvalidParameter, LimitExceeded, MissingParameter
from jobengine.handles import MAX_ROW_ID, company_segment
from jobengine.i18n import fill
from jobengine.store.schema import SetPreset

__all__ = [
    "MAX_PATTERN",
    "MAX_SUBJECT",
    "MAX_TEMPLATE",
    "MAX_VARIABLE_REPEATS",
    "MAX_VIEWS",
    "ORDERS",
    "RULE_SET_TYPES",
    "Member",
    "SetRule",
    "check_pattern",
    "group_assets",
    "name_stem",
    "order_members",
    "parse_set_preset_handle",
    "rule_of",
    "set_preset_handle",
]

MAX_PATTERN: Final = 256  # characters of a pattern
MAX_SUBJECT: Final = 255  # characters of a name stem that is matched at all
MAX_TEMPLATE: Final = 200  # characters of a name template
MAX_VIEWS: Final = 50  # views of a view order
MAX_VIEW: Final = 64  # characters of one view
MAX_VARIABLE_REPEATS: Final = 3
RULE_SET_TYPES: Final = ("ImageSet", "SpinSet")
ORDERS: Final = ("view", "sequence", "name")
_SAFE_TEXT = re.compile(r"[A-Za-z0-9._ -]*")  # what asset names keep (storage.safe_name)

_parser: Any = importlib.import_module("re._parser")  # the stdlib's own parser (no stubs)
_REPEATS = frozenset({"MAX_REPEAT", "MIN_REPEAT", "POSSESSIVE_REPEAT"})
_REFUSED = {
    "GROUPREF": "backreferences",
    "GROUPREF_EXISTS": "conditional groups",
    "ASSERT": "lookarounds",
    "ASSERT_NOT": "lookarounds",
}


def _text_ok(value: str, field: str) -> None:
    for ch in value:
        if ch == "\0" or unicodedata.category(ch) == "Cc":
            raise InvalidParameter(f"{field} holds the control character {ch!r}", field=field)


def _walk(items: Iterable[tuple[Any, Any]], in_repeat: bool, count: list[int]) -> None:
    """Refuse the constructs of unbounded backtracking; count variable-length repeats."""
    for op, av in items:
        name = str(op)
        if name in _REFUSED:
            raise InvalidParameter(
                f"pattern may not use {_REFUSED[name]} (matching must stay bounded)",
                field="pattern",
            )
        if name in _REPEATS:
            low, high, body = av
            variable = low != high
            if variable:
                if in_repeat:
                    raise InvalidParameter(
                        "pattern nests a variable-length repeat inside another (catastrophic "
                        "backtracking); write e.g. (?:ab)+ or [ab]+ instead",
                        field="pattern",
                    )
                count[0] += 1
            _walk(body, in_repeat or (variable and high > 1), count)
        elif name == "BRANCH":
            if in_repeat:
                raise InvalidParameter(
                    "pattern repeats an alternation (catastrophic backtracking); use a "
                    "character class or list the views without repeating them",
                    field="pattern",
                )
            for branch in av[1]:
                _walk(branch, in_repeat, count)
        elif name == "SUBPATTERN":
            _walk(av[-1], in_repeat, count)
        elif name == "ATOMIC_GROUP":
            _walk(av, in_repeat, count)


def check_pattern(pattern: str) -> re.Pattern[str]:
    """The compiled pattern, or InvalidParameter/LimitExceeded (field ``pattern``) saying why it
    is refused: empty, too long, not a regular expression, no ``base`` group, or unbounded."""
    if not pattern:
        raise MissingParameter("pattern is empty", field="pattern")
    if len(pattern) > MAX_PATTERN:
        raise LimitExceeded(
            f"pattern has {len(pattern)} characters; at most {MAX_PATTERN} are allowed",
            field="pattern",
        )
    _text_ok(pattern, "pattern")
    try:
        compiled = re.compile(pattern)
        tree = _parser.parse(pattern)
    except (re.error, RecursionError, OverflowError) as exc:
        raise InvalidParameter(
            f"pattern is not a regular expression: {exc}", field="pattern"
        ) from None
    if "base" not in compiled.groupindex:
        raise InvalidParameter(
            "pattern has no named group 'base' (e.g. ^(?P<base>.+)_(?P<view>front|back)$)",
            field="pattern",
        )
    count = [0]
    _walk(tree, False, count)
    if count[0] > MAX_VARIABLE_REPEATS:
        raise InvalidParameter(
            f"pattern has {count[0]} variable-length repeats; at most "
            f"{MAX_VARIABLE_REPEATS} are allowed",
            field="pattern",
        )
    return compiled


def _check_template(template: str) -> None:
    if not template.strip():
        raise MissingParameter("nameTemplate is empty", field="nameTemplate")
    if len(template) > MAX_TEMPLATE:
        raise LimitExceeded(
            f"nameTemplate has {len(template)} characters; at most {MAX_TEMPLATE} are allowed",
            field="nameTemplate",
        )
    _text_ok(template, "nameTemplate")
    try:
        parts = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise InvalidParameter(f"nameTemplate is malformed: {exc}", field="nameTemplate") from None
    fields = [(f, s, c) for _, f, s, c in parts if f is not None]
    if any(f != "base" or s or c for f, s, c in fields) or not fields:
        raise InvalidParameter(
            "nameTemplate must hold {base} and no other field (e.g. {base}_set)",
            field="nameTemplate",
        )
    literal = "".join(text for text, *_ in parts)
    if not _SAFE_TEXT.fullmatch(literal):
        raise InvalidParameter(
            "nameTemplate may hold only {base}, letters A-Z a-z, digits, '.', '_', '-' and spaces",
            field="nameTemplate",
        )


def _clean_views(views: Sequence[str]) -> tuple[str, ...]:
    if len(views) > MAX_VIEWS:
        raise LimitExceeded(
            f"views holds {len(views)} views; at most {MAX_VIEWS} are allowed", field="views"
        )
    out: list[str] = []
    for given in views:
        view = given.strip()
        if not view or len(view) > MAX_VIEW:
            raise InvalidParameter(
                f"every view must have 1 to {MAX_VIEW} characters; got {view[:80]!r}",
                field="views",
            )
        _text_ok(view, "views")
        if view.casefold() in (v.casefold() for v in out):
            raise InvalidParameter(f"view {view!r} is listed twice", field="views")
        out.append(view)
    return tuple(out)


@dataclass(frozen=True)
class Member:
    """An asset a rule matched: its handle, name, and the groups that place it."""

    handle: str
    name: str
    base: str
    view: str | None = None
    seq: str | None = None


@dataclass(frozen=True)
class SetRule:
    """A validated batch set preset rule (see the module text)."""

    set_type: str
    pattern: str
    order: str = "name"
    views: tuple[str, ...] = ()
    name_template: str = "{base}"

    @classmethod
    def build(
        cls,
        set_type: str,
        pattern: str,
        order: str = "name",
        views: Sequence[str] = (),
        name_template: str = "{base}",
    ) -> SetRule:
        """A rule with every field checked; InvalidParameter (or MissingParameter,
        LimitExceeded) naming the field (``setType``, ``pattern``, ``order``, ``views``,
        ``nameTemplate``) when one is refused."""
        if set_type not in RULE_SET_TYPES:
            raise InvalidParameter(
                f"setType must be one of {', '.join(RULE_SET_TYPES)}; got {set_type[:80]!r}",
                field="setType",
            )
        compiled = check_pattern(pattern)
        if order not in ORDERS:
            raise InvalidParameter(
                f"order must be one of {', '.join(ORDERS)}; got {order[:80]!r}", field="order"
            )
        clean = _clean_views(views)
        if order == "view":
            if not clean:
                raise MissingParameter("order 'view' needs the views in order", field="views")
            if "view" not in compiled.groupindex:
                raise InvalidParameter(
                    "order 'view' needs a named group 'view' in the pattern", field="pattern"
                )
        elif clean:
            raise InvalidParameter("views are only used with order 'view'", field="views")
        if order == "sequence" and "seq" not in compiled.groupindex:
            raise InvalidParameter(
                "order 'sequence' needs a named group 'seq' in the pattern", field="pattern"
            )
        _check_template(name_template)
        return cls(set_type, pattern, order, clean, name_template)

    @property
    def compiled(self) -> re.Pattern[str]:
        return re.compile(self.pattern)  # re caches compiled patterns

    def match(self, handle: str, name: str) -> Member | None:
        """The asset as a member of this rule's set, or None when its name does not match."""
        stem = name_stem(name)
        if len(stem) > MAX_SUBJECT:
            return None
        found = self.compiled.fullmatch(stem)
        if found is None:
            return None
        base = found.group("base")
        if not base:
            return None
        groups = found.groupdict()
        return Member(handle, name, base, groups.get("view"), groups.get("seq"))

    def set_name(self, base: str) -> str:
        """The name of the set of ``base`` (not yet checked as an asset name)."""
        named = fill(self.name_template, {"base": base})
        assert named is not None  # the template was checked when the rule was built
        return named


def name_stem(name: str) -> str:
    """An asset name without its extension (``shoe_front.jpg`` -> ``shoe_front``)."""
    stem, dot, _ = name.rpartition(".")
    return stem if dot and stem else name


def order_members(rule: SetRule, members: Iterable[Member]) -> list[Member]:
    """The members of one set in the rule's order (ties by name, then handle)."""
    views = [v.casefold() for v in rule.views]

    def key(m: Member) -> tuple[int, int, str, str]:
        if rule.order == "view":
            view = (m.view or "").casefold()
            rank = views.index(view) if view in views else len(views)
            return (rank, 0, m.name, m.handle)
        if rule.order == "sequence":
            seq = m.seq or ""
            if seq.isascii() and seq.isdigit() and len(seq) <= 18:
                return (0, int(seq), m.name, m.handle)
            return (1, 0, m.name, m.handle)
        return (0, 0, m.name, m.handle)

    return sorted(members, key=key)


def group_assets(rule: SetRule, assets: Iterable[tuple[str, str]]) -> dict[str, list[Member]]:
    """Set name -> its members in order, for the (handle, name) assets this rule matches; the
    set names in order of first appearance (the assets' order)."""
    groups: dict[str, list[Member]] = {}
    for handle, name in assets:
        member = rule.match(handle, name)
        if member is not None:
            groups.setdefault(rule.set_name(member.base), []).append(member)
    return {name: order_members(rule, members) for name, members in groups.items()}


def set_preset_handle(company_handle: str, preset_id: int) -> str:
    """A preset's handle: ``<company>|sp|<id>``."""
    return f"{company_segment(company_handle)}|sp|{preset_id}"


def parse_set_preset_handle(handle: str, field: str = "setPresetHandle") -> tuple[str, int]:
    """(company segment, id) of a preset handle; InvalidParameter (naming ``field``) if it is
    not one."""
    parts = handle.split("|")
    if (
        len(parts) != 3
        or parts[1] != "sp"
        or not parts[0]
        or not (parts[2].isascii() and parts[2].isdigit())
        or int(parts[2]) > MAX_ROW_ID
    ):
        raise InvalidParameter(f"{handle[:200]!r} is not a set preset handle", field=field)
    return parts[0], int(parts[2])


def rule_of(preset: SetPreset) -> SetRule:
    """The rule of a stored preset (checked again: a rule that fails today's checks raises)."""
    return SetRule.build(
        preset.set_type, preset.pattern, preset.member_order, preset.views, preset.name_template
    )
