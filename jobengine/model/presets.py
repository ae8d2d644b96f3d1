"""Image preset (IPS "image format", IS macro) names: free text as IPS has them, within bounds.

IPS stores any name (Adobe's own saveImageFormat example is ``My Image Format Name``); this
server keeps a name to :data:`MAX_PRESET_NAME` characters, not blank, without control characters
(C0, DEL, C1, line and paragraph separators). A request invokes a preset as ``$name$``: there
the name cannot hold ``$``, ``&`` (they delimit macros and commands) or ``=`` (``$var=value``
defines a variable), so :data:`MACRO_NAME` is every other character. A preset whose name holds
one of them can be saved, as in IPS, but not invoked.
"""

from __future__ import annotations

import unicodedata

__all__ = ["MACRO_NAME", "MAX_PRESET_NAME", "PRESET_NAME_PATTERN", "preset_name_problem"]

MAX_PRESET_NAME = 255

# The characters a preset name may not hold, as a regex class body (also a JSON-schema hint).
_CONTROLS = r"\u0000-\u001F\u007F-\u009F\u2028\u2029"
PRESET_NAME_PATTERN = rf"^[^{_CONTROLS}]{{1,{MAX_PRESET_NAME}}}$"
MACRO_NAME = rf"[^$&={_CONTROLS}]+"


def preset_name_problem(name: str) -> str | None:
    """Why ``name`` cannot name a preset, or None when it can."""
    if not name.strip():
        return "a preset name cannot be empty or blank"
    if len(name) > MAX_PRESET_NAME:
        return f"a preset name has at most {MAX_PRESET_NAME} characters; this one has {len(name)}"
    for char in name:
        if unicodedata.category(char) in ("Cc", "Zl", "Zp"):
            return f"a preset name cannot hold the control character U+{ord(char):04X}"
    return None
