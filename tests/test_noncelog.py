"""`ledger.noncelog`: a verifier's used nonces kept in a file, across runs and users."""

from __future__ import annotations

import hashlib
import threading
import time
from pathlib import Path

import pytest

from ledger.noncelog import NonceLog, NonceLogError


def test_used_nonces_persist_as_digests(tmp_path: Path) -> None:
    log = tmp_path / "used.log"
    with NonceLog(log) as used:
        assert "n-1" not in used
        used.add("n-1")
        used.add("n-1")  # once only
        used.add("ñ-2")
        assert "n-1" in used and "ñ-2" in used and len(used) == 2
    with NonceLog(log) as again:
        assert "n-1" in again and "ñ-2" in again and "n-3" not in again
        assert 42 not in again  # type: ignore[comparison-overlap]  # not a str: never used
        # a nonce is any str, even with a lone surrogate (JSON's "\ud800"): kept apart from
        # the nonce with a replacement character in its place
        again.add("\ud800-4")
        assert "\ud800-4" in again and "?-4" not in again and "\ufffd-4" not in again
    assert log.read_text().splitlines() == [hashlib.sha256(b"n-1").hexdigest(),
                                            hashlib.sha256("ñ-2".encode()).hexdigest(),
                                            hashlib.sha256(b"\xed\xa0\x80-4").hexdigest()]


def test_a_log_only_grows_and_is_used_inside_with(tmp_path: Path) -> None:
    log = NonceLog(tmp_path / "used.log")
    with pytest.raises(NonceLogError, match="not open"):
        log.add("n-1")
    with log, pytest.raises(NonceLogError, match="only grows"):
        log.discard("n-1")


def test_files_that_are_not_logs_are_refused_unchanged(tmp_path: Path) -> None:
    for name, content in (("text", b"hello\n"), ("binary", b"\xff\xfe\x00"),
                          ("short", hashlib.sha256(b"x").hexdigest()[:63].encode() + b"\n"),
                          ("hexish", b"cafe"), ("text then hexish", b"hello\ncafe")):
        path = tmp_path / name
        path.write_bytes(content)
        with pytest.raises(NonceLogError, match="not a nonce"), NonceLog(path):
            pass
        assert path.read_bytes() == content


def test_a_last_line_without_its_line_end_is_kept_apart_or_dropped_if_torn(
        tmp_path: Path) -> None:
    a, b = hashlib.sha256(b"n-a").hexdigest(), hashlib.sha256(b"n-b").hexdigest()
    edited = tmp_path / "edited.log"
    edited.write_text(a)  # a whole digest, its line end lost (say, by an editor)
    with NonceLog(edited) as used:
        assert "n-a" in used
        used.add("n-b")
    assert edited.read_text() == f"{a}\n{b}\n"
    with NonceLog(edited) as again:  # and it stays usable
        assert "n-a" in again and "n-b" in again
    second = tmp_path / "second.log"  # the same after whole digests: the last one is kept
    second.write_text(f"{a}\n{b}")
    with NonceLog(second) as used:
        assert "n-a" in used and "n-b" in used and len(used) == 2
        used.add("n-c")
        used.add("n-d")  # the line end is written once, before the first only
    c, d = (hashlib.sha256(n).hexdigest() for n in (b"n-c", b"n-d"))
    assert second.read_text() == f"{a}\n{b}\n{c}\n{d}\n"
    torn = tmp_path / "torn.log"
    torn.write_text(f"{a}\n{b[:20]}")  # a write cut short by a crash: its verdict never shown
    with NonceLog(torn) as used:
        assert "n-a" in used and "n-b" not in used and len(used) == 1
        used.add("n-b")
    assert torn.read_text() == f"{a}\n{b}\n"


def test_a_second_user_waits_for_the_first_and_then_sees_its_nonce(tmp_path: Path) -> None:
    log = tmp_path / "shared.log"
    seen: list[bool] = []

    def second() -> None:
        with NonceLog(log) as used:
            seen.append("n-1" in used)

    with NonceLog(log) as first:
        other = threading.Thread(target=second)
        other.start()
        time.sleep(0.3)  # without the lock, the second reads the log now, before the add
        assert seen == []
        first.add("n-1")
    other.join(timeout=30)
    assert seen == [True]
