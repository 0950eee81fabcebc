"""QR codes for presentation envelopes (segno; no system libraries).

The QR code holds the envelope's bytes themselves, in byte mode (up to 2,953 bytes in a version
40-L code); base64url would cost a third more and overflow once inclusion proofs grow. The
base64url text is for copying and pasting.
"""

from __future__ import annotations

import base64
import io
from typing import TextIO

import segno

from wallet.errors import WalletError

__all__ = ["b64url", "make_qr", "png_bytes", "print_qr"]


def b64url(data: bytes) -> str:
    """Unpadded base64url of ``data``."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def make_qr(envelope: bytes) -> segno.QRCode:
    """The QR code of ``envelope``'s bytes; WalletError if it does not fit one code."""
    try:
        return segno.make_qr(envelope, error="l", boost_error=True)
    except segno.DataOverflowError as e:
        raise WalletError(f"the envelope ({len(envelope)} bytes{_checkpoint_share(envelope)}) "
                          "does not fit one QR code (2,953 bytes at most); hand over the file "
                          "or the text instead, or disclose fewer claims") from e


def _checkpoint_share(envelope: bytes) -> str:
    """How much of ``envelope`` its checkpoint takes: on a network of ten agencies or more, the
    co-signatures alone outgrow one code (ADR 48), so fewer claims would not help."""
    from ledger.checkpoint import SignedCheckpoint
    from ledger.errors import LedgerError
    from ledger.presentation import Envelope

    try:
        text = Envelope.from_bytes(envelope).checkpoint
        signed = SignedCheckpoint.from_text(text)
    except LedgerError:
        return ""
    return (f", of which {len(text.encode()):,} the checkpoint with {len(signed.signatures)} "
            "co-signatures")


def png_bytes(code: segno.QRCode) -> bytes:
    """The PNG image of ``code`` (4 pixels a module, the standard 4-module quiet zone)."""
    buf = io.BytesIO()
    code.save(buf, kind="png", scale=4, border=4)
    return buf.getvalue()


def print_qr(code: segno.QRCode, out: TextIO) -> None:
    """Draw ``code`` with Unicode half blocks on a terminal; on one that cannot show them (not
    UTF-8), with its colours (ASCII escape codes): escaped blocks would not scan."""
    from ledger.files import takes_any_character

    code.terminal(out=out, compact=takes_any_character(out, unknown=True))
