"""Text from outside (claim values, request fields, file names) shown on a terminal.

A terminal acts on escape sequences, and line breaks and bidirectional-override characters change
what a reader sees: an issuer's claim value or a verifier's request could otherwise redraw the
screen, hide the real disclosure list and show a fake one. :func:`printable` shows each such
character as a visible Python-style escape instead.
"""

from __future__ import annotations

import inspect
from typing import Any

__all__ = ["printable", "reflow_help"]


_INVISIBLE = frozenset((0x034F, 0x115F, 0x1160, 0x17B4, 0x17B5, 0x2800, 0x3164, 0xFFA0,
                        *range(0xFE00, 0xFE10), *range(0xE0100, 0xE01F0)))
"""Characters Python calls printable that show as nothing (variation selectors, the combining
grapheme joiner, Hangul fillers, the blank Braille pattern): ``长盛\u3164`` looks like
``长盛`` but is another text, which a rule would tell apart and an official could not."""


def printable(text: str) -> str:
    """``text`` with every non-printable character (C0/C1 controls such as ESC, line breaks,
    format characters such as bidi overrides, unassigned and private-use code points, and
    whitespace other than the space) and every invisible one (:data:`_INVISIBLE`) written as
    ``\\xNN``, ``\\uNNNN`` or ``\\UNNNNNNNN``."""
    if text.isprintable() and not any(ord(ch) in _INVISIBLE for ch in text):
        return text
    return "".join(ch if ch.isprintable() and ord(ch) not in _INVISIBLE else _escaped(ch)
                   for ch in text)


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
