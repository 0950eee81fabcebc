"""Text from outside (claim values, request fields, file names) shown on a terminal.

A terminal acts on escape sequences, and line breaks and bidirectional-override characters change
what a reader sees: an issuer's claim value or a verifier's request could otherwise redraw the
screen, hide the real disclosure list and show a fake one. :func:`printable` shows each such
character as a visible Python-style escape instead.
"""

from __future__ import annotations

import inspect
import re
import unicodedata
from typing import Any

__all__ = ["hidden_character", "printable", "reflow_help", "shown_as_is"]


_INVISIBLE = frozenset((0x034F, 0x115F, 0x1160, 0x17B4, 0x17B5, 0x2800, 0x3164, 0xFFA0,
                        *range(0xFE00, 0xFE10), *range(0xE0100, 0xE01F0)))
"""Characters Python calls printable that show as nothing (variation selectors, the combining
grapheme joiner, Hangul fillers, the blank Braille pattern): ``长盛\u3164`` looks like
``长盛`` but is another text, which a rule would tell apart and an official could not."""


_INVISIBLE_RE = re.compile("[\u034f\u115f\u1160\u17b4\u17b5\u2800\u3164\uffa0"
                           "\ufe00-\ufe0f\U000e0100-\U000e01ef]")
_NEWER_CJK = re.compile("[\U00020000-\U0003fffd]")
"""Planes 2 and 3 hold CJK ideographs only. Those added after this Python's Unicode tables
(Extensions H and I, Unicode 15 and 15.1, from China's list of characters for personal and
place names) are "unassigned" to Python 3.11: shown, not escaped."""


def shown_as_is(ch: str) -> bool:
    """Whether :func:`printable` leaves ``ch`` as it is."""
    return (ch.isprintable() and ord(ch) not in _INVISIBLE) or (
        _NEWER_CJK.match(ch) is not None and unicodedata.category(ch) == "Cn")


_MONGOLIAN = re.compile("[\u1820-\u18af]")
_JOINING = re.compile("[\u0600-\u06ff\u0750-\u077f\u0900-\u0dff]")  # Arabic (Uyghur), Indic


def _joins(text: str, i: int) -> bool:
    """Whether the invisible ``text[i]`` is part of a script's spelling: the narrow no-break
    space before a Mongolian case suffix and the Mongolian vowel separator (between
    Mongolian letters), a zero-width (non-)joiner between letters of a joining script (as RFC
    5892 allows them)."""
    ch = text[i]
    before, after = text[i - 1:i], text[i + 1:i + 2]
    if ch in "\u202f\u180e":
        return bool(_MONGOLIAN.match(before) and _MONGOLIAN.match(after))
    if ch in "\u200c\u200d":
        return bool(_JOINING.match(before) and _JOINING.match(after))
    return False


def hidden_character(text: str, allowed: str = " \u3000") -> str | None:
    """The first character of ``text`` that does not show as what it is, or None: a control, a
    format character (a bidi override, a zero-width space), a separator, a surrogate, private
    use, an invisible one (:data:`_INVISIBLE`); ``allowed`` (by default the space and the
    ideographic space) and the joiners a script is spelt with excepted. What string claims
    (and the text approval rules compare them with) may not hold."""
    return next((ch for i, ch in enumerate(text)
                 if ch not in allowed and not shown_as_is(ch) and not _joins(text, i)), None)


def printable(text: str) -> str:
    """``text`` with every non-printable character (C0/C1 controls such as ESC, line breaks,
    format characters such as bidi overrides, unassigned and private-use code points, and
    whitespace other than the space) and every invisible one (:data:`_INVISIBLE`) written as
    ``\\xNN``, ``\\uNNNN`` or ``\\UNNNNNNNN``; CJK ideographs newer than this Python's
    Unicode tables are shown."""
    if text.isprintable() and _INVISIBLE_RE.search(text) is None:
        return text
    return "".join(ch if shown_as_is(ch) else _escaped(ch) for ch in text)


def _escaped(ch: str) -> str:
    code = ord(ch)
    if code < 0x100:
        return f"\\x{code:02x}"
    if code < 0x10000:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def reflow_help(app: Any) -> None:
    """Join the wrapped lines of each command's docstring into paragraphs, for ``--help``.

    Typer (0.29) keeps a docstring's single line breaks after its first paragraph, so help
    written at 100 columns came out with a break in mid-sentence and a ragged right edge on any
    other width. Paragraphs (blank-line separated) stay; the terminal wraps the rest.
    ``app`` is a ``typer.Typer``; groups added to it are reflowed too."""
    for info in app.registered_commands:
        doc = info.help if info.help is not None else inspect.getdoc(info.callback)
        if doc:
            info.help = "\n\n".join(" ".join(p.split()) for p in doc.split("\n\n"))
    for group in app.registered_groups:
        reflow_help(group.typer_instance)
