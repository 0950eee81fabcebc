"""A verifier's record of the request nonces it has used, kept in a file across runs.

A :class:`~ledger.presentation.Verifier` accepts a request's nonce once when given a set of used
nonces. In one process that set can live in memory; the command-line verifier (``ledger verify
--nonce-log FILE``) runs once per presentation, so it keeps the set in a file: one SHA-256 hex
digest of a nonce per line (the nonces themselves are not kept), appended and synced before the
verdict is printed. The file is locked while a verification runs, so two officials sharing one
log cannot both accept the same nonce.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import re
import stat
from collections.abc import Iterator, MutableSet
from pathlib import Path
from types import TracebackType
from typing import IO

from ledger.errors import LedgerError

__all__ = ["NonceLog", "NonceLogError"]

_LINE = re.compile(r"[0-9a-f]{64}")
_PARTIAL = re.compile(r"[0-9a-f]{1,63}")


class NonceLogError(LedgerError):
    """A nonce log that cannot be read, locked or written (the message names the file)."""


class NonceLog(MutableSet[str]):
    """Used nonces in ``path``; use as a context manager (it holds the file's lock)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file: IO[str] | None = None
        self._seen: set[str] = set()
        self._newline_first = False

    def __enter__(self) -> NonceLog:
        try:
            self._seen = self._open_and_read()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def _open_and_read(self) -> set[str]:
        try:
            # 0600 whatever the umask: a log others could truncate would let a replay through
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o600)
            mode = os.fstat(fd).st_mode
            if mode & 0o002:  # an older log made under umask 000: no longer anyone's to write
                try:
                    os.fchmod(fd, stat.S_IMODE(mode) & ~0o002)
                except OSError:
                    os.close(fd)
                    raise
            self._file = os.fdopen(fd, "a+", encoding="ascii")  # kept open: it holds the lock
            fcntl.flock(self._file, fcntl.LOCK_EX)
            self._file.seek(0)
            text = self._file.read()
        except OSError as e:
            raise NonceLogError(f"cannot use the nonce log {self.path}: {e.strerror or e}") from e
        except UnicodeDecodeError as e:
            raise NonceLogError(f"{self.path} is not a nonce log (not ASCII text)") from e
        lines = text.splitlines()
        torn = bool(text) and not text.endswith("\n")
        if torn and len(lines) > 1 and _PARTIAL.fullmatch(lines[-1]) and \
                all(map(_LINE.fullmatch, lines[:-1])):
            # A write cut short (the verdict it belonged to was never printed): drop it. Only
            # after whole digests, so a short hex-looking file named by mistake is left alone.
            self._truncate(len(text) - len(lines[-1]))
            lines.pop()
            torn = False
        for n, line in enumerate(lines, 1):
            if not _LINE.fullmatch(line):
                raise NonceLogError(f"{self.path} line {n} is not a nonce digest: is this file a "
                                    f"nonce log?")
        self._newline_first = torn  # a complete last digest with no line end (edited by hand)
        return set(lines)

    def _truncate(self, size: int) -> None:
        assert self._file is not None
        try:
            self._file.truncate(size)
            os.fsync(self._file.fileno())
        except OSError as e:
            raise NonceLogError(f"cannot repair the nonce log {self.path}: "
                                f"{e.strerror or e}") from e

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self._file is not None:
            # also releases the lock. After a write that failed (a full disk) the buffer still
            # holds that digest and close() tries it again: that error was said already (the
            # NonceLogError of add), and a torn last line is repaired at the next open.
            with contextlib.suppress(OSError):
                self._file.close()
            self._file = None

    @staticmethod
    def _digest(nonce: str) -> str:
        return hashlib.sha256(nonce.encode("utf-8", "surrogatepass")).hexdigest()

    def __contains__(self, nonce: object) -> bool:
        return isinstance(nonce, str) and self._digest(nonce) in self._seen

    def __iter__(self) -> Iterator[str]:  # digests: the nonces themselves are not kept
        return iter(sorted(self._seen))

    def __len__(self) -> int:
        return len(self._seen)

    def add(self, nonce: str) -> None:
        """Record ``nonce`` as used: appended and synced before this returns."""
        if self._file is None:
            raise NonceLogError("the nonce log is not open (use it in a with block)")
        digest = self._digest(nonce)
        if digest in self._seen:
            return
        try:
            self._file.write(("\n" if self._newline_first else "") + digest + "\n")
            self._newline_first = False
            self._file.flush()
            os.fsync(self._file.fileno())
        except OSError as e:
            raise NonceLogError(f"cannot write the nonce log {self.path}: "
                                f"{e.strerror or e}") from e
        self._seen.add(digest)

    def discard(self, nonce: str) -> None:
        raise NonceLogError("a nonce log only grows: a used nonce stays used")
