"""Text that comes from users, files or model folders, shown safely: names as plain text inside
Markdown, and numbers formatted only when they really are numbers."""
from __future__ import annotations

import math
import re
from typing import Any, Optional

# Characters that start Markdown (or Streamlit's extensions: $ for LaTeX, ~ for strikethrough)
# anywhere in a line; a backslash before any ASCII punctuation shows it as itself.
_INLINE = re.compile(r"([\\`*_\[\]<>~$|{}])")
# ... and those that only matter at the start of a line: headings, lists, quotes, numbered lists.
_LINE_START = re.compile(r"^(\s*)([#+\-=>]|\d+[.)])")
MISSING = "–"  # what a table or card shows for a value a run does not have


def escape_markdown(text: Any) -> str:
    """``text`` as literal text inside Markdown: no emphasis, links, code, HTML, LaTeX or headings.
    Line breaks become spaces, so a name stays on its line."""
    flat = " ".join(str(text).splitlines())
    escaped = _INLINE.sub(r"\\\1", flat)
    return _LINE_START.sub(lambda m: m.group(1) + m.group(2)[:-1] + "\\" + m.group(2)[-1], escaped)


def number(value: Any) -> Optional[float]:
    """``value`` when it is a finite int or float (not a bool, a string or None), else None."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return value if math.isfinite(value) else None


def fmt_number(value: Any, spec: str = "", missing: str = MISSING) -> str:
    """``value`` formatted with ``spec`` when it is a number (see ``number``), else ``missing``."""
    checked = number(value)
    if checked is None:
        return missing
    try:
        return format(checked, spec)
    except ValueError:  # e.g. a float where a whole number was expected
        return format(checked, "g")

def fmt_text(value: Any, missing: str = MISSING) -> str:
    """A text field from a file, escaped for Markdown; ``missing`` when it is not a non-empty string."""
    return escape_markdown(value) if isinstance(value, str) and value.strip() else missing
