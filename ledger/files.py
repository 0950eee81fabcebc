"""Files written whole or not at all, and a stop asked by SIGTERM that runs the clean-up.

Every file the command-line tools and the node write for a person to keep (a key, a wallet, a
bundle, an archive, a snapshot, an audit statement, an approval record) goes through
:func:`atomic_output`: it is written to a hidden temporary file beside its target, flushed to
disk, then renamed over the target. Whatever stops the writer half-way (an error, Ctrl-C, a
SIGTERM under :func:`sigterm_raises`) leaves the target as it was and removes the temporary file.
Only SIGKILL or a power cut can leave a ``.<name>.<random>.tmp`` file behind (ADR 35).
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import io
import os
import resource
import secrets
import shutil
import signal
import stat
import sys
import threading
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, BinaryIO, NoReturn, TextIO, cast

__all__ = [
    "NOT_UNICODE", "SigtermSeen", "Terminated", "atomic_output", "confirm", "die_with_parent",
    "hold_empty_folder", "interrupts_held", "lock_folder", "make_folders", "no_core_files",
    "read_capped", "remove_contents", "run_cli", "sigterm_raises", "sync_folder", "write_atomic",
]


def lock_folder(folder: Path, waiting: Callable[[], None] | None = None) -> int:
    """A descriptor of ``folder`` holding an advisory lock on the folder itself (no file is
    added to it) until it is closed: one command at a time changes what is inside. A second
    waits (``waiting`` says so first). OSError if ``folder`` cannot be opened as a folder."""
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if waiting is not None:
                waiting()
            fcntl.flock(fd, fcntl.LOCK_EX)
    except BaseException:
        os.close(fd)
        raise
    return fd


def make_folders(folder: Path, mode: int) -> None:
    """``folder`` and each missing folder above it, made with ``mode`` (less the umask's bits),
    no error if it exists. ``mkdir(parents=True, mode=...)`` gives the mode to the last one only,
    and makes the others 0777 under umask 000 (``mkdir -p``'s rule): anyone could then rename
    the protected folder aside and put their own in its place."""
    missing = []
    at = folder
    while not at.exists() and not at.is_symlink() and at != at.parent:
        missing.append(at)
        at = at.parent
    if not at.is_dir():  # a file (or a link to nowhere) in the way, as mkdir would say
        raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), str(at))
    for made in reversed(missing):
        made.mkdir(mode=mode, exist_ok=True)


def hold_empty_folder(folder: Path, mode: int = 0o750) -> tuple[int | None, bool]:
    """``folder`` made if missing (``mode``; 0750: others cannot swap what is inside), locked
    (:func:`lock_folder`, held until the returned descriptor is closed) and found empty under
    the lock, for a command that fills a new folder and, cut short, removes what it wrote: two
    at once each saw it empty, and the one that failed on the other's files removed them as
    its own. ``(None, made)`` when it is not empty (or was replaced meanwhile); ``made``:
    whether this call made the folder."""
    made = False
    try:
        make_folders(folder.parent, mode)
        folder.mkdir(mode=mode)
        made = True
    except FileExistsError:
        pass
    fd = lock_folder(folder)
    try:
        if os.stat(folder).st_ino != os.fstat(fd).st_ino or any(folder.iterdir()):
            os.close(fd)
            return None, made
    except BaseException:
        with contextlib.suppress(OSError):
            os.close(fd)
        raise
    return fd, made


@contextlib.contextmanager
def atomic_output(path: Path, mode: int = 0o600, *, overwrite: bool = True
                  ) -> Iterator[BinaryIO]:
    """Within: a file to write ``path``'s new content to. On a normal exit the content is made
    durable and takes the place of ``path`` (``mode`` from the start, so a key or a wallet is never
    readable by others, even for a moment); on any exception ``path`` is unchanged.

    With ``overwrite=False`` an existing ``path`` is never replaced: :class:`FileExistsError`,
    decided atomically by the file system (``link``), so two writers cannot both win.
    """
    if path.exists() and not path.is_file():  # a device, a folder: never replaced by a file
        raise IsADirectoryError(errno.EISDIR if path.is_dir() else errno.EINVAL,
                                "not a regular file; not replacing it", str(path))
    # a name of its own beside the file, short enough beside any name the folder takes
    stem = os.fsdecode(os.fsencode(path.name)[:200])  # bytes count, not characters
    tmp = path.with_name(f".{stem}.{secrets.token_hex(6)}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    except OSError as e:  # said of the file asked for, not of a hidden name it never saw
        raise type(e)(e.errno, e.strerror, str(path)) from e
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        if overwrite:
            tmp.replace(path)
        else:
            _place_new(tmp, path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        if e.filename is None and e.errno in _WRITE_FAILED:  # the kernel names no file
            raise type(e)(e.errno, e.strerror, str(path)) from e
        raise
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    sync_folder(path.parent)


_WRITE_FAILED = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EIO)
"""What a write, flush or fsync of the new content fails with, with no file name of its own: a
full disk said without where (`agency cosign`: 'error: No space left on device')."""

_NO_LINKS = (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK)
_RENAME_NOREPLACE = 1


def _place_new(tmp: Path, path: Path) -> None:
    """Move ``tmp`` to ``path`` only if nothing is there (FileExistsError otherwise), decided by
    the file system: ``link`` where it has hard links; ``renameat2(RENAME_NOREPLACE)`` where it
    has not (FAT and exFAT USB sticks, some network and FUSE mounts, ADR 52); and where neither
    is offered, a look first, then the rename (a narrow race, the best left)."""
    try:
        os.link(tmp, path)
    except FileExistsError as e:  # said of ``path``, not of the hidden name link was given first
        raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), str(path)) from e
    except OSError as e:
        if e.errno not in _NO_LINKS:
            raise
    else:
        tmp.unlink()
        return
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        got = libc.renameat2(-100, os.fsencode(tmp), -100, os.fsencode(path),
                             _RENAME_NOREPLACE)  # -100: AT_FDCWD
    except (AttributeError, OSError):  # no renameat2 in this C library
        got, err = -1, errno.ENOSYS
    else:
        err = ctypes.get_errno()
    if got == 0:
        return
    if err == errno.EEXIST:
        raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), str(path))
    if err not in (errno.ENOSYS, errno.EINVAL, *_NO_LINKS):
        raise OSError(err, os.strerror(err), str(path))
    if path.exists() or path.is_symlink():
        raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), str(path))
    tmp.replace(path)


def write_atomic(path: Path, data: bytes, mode: int = 0o600, *, overwrite: bool = True) -> None:
    """Write ``data`` to ``path`` whole or not at all (see :func:`atomic_output`)."""
    with atomic_output(path, mode, overwrite=overwrite) as f:
        f.write(data)


KEY_FILE_MAX = 64 * 1024
"""The most a key, secret or certificate file is read: each is well under 16 kB."""


def read_capped(path: Path, limit: int = KEY_FILE_MAX) -> bytes:
    """The bytes of the regular file ``path``, read only if it holds at most ``limit``.

    An :class:`OSError` as :meth:`Path.read_bytes` raises it, and also for what is not a
    regular file (a FIFO would hang the reader, a device never ends; opened without blocking)
    and for a file larger than ``limit`` (``errno.EFBIG``, never read whole).
    """
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise OSError(errno.EINVAL, "not a regular file", str(path))
        if info.st_size > limit:
            raise OSError(errno.EFBIG, f"{info.st_size} bytes, over the {limit}-byte limit",
                          str(path))
        with os.fdopen(fd, "rb", closefd=False) as f:
            data = f.read(limit + 1)
    finally:
        os.close(fd)
    if len(data) > limit:  # grown since fstat
        raise OSError(errno.EFBIG, f"over the {limit}-byte limit", str(path))
    return data


def remove_contents(folder: Path, *, last: str | None = None) -> None:
    """Remove everything ``folder`` holds (links, not what they point to), the entry named
    ``last`` after all the others: a removal cut short then leaves that one (a marker that says
    whose the folder is) in place."""
    entries = sorted(folder.iterdir(), key=lambda p: p.name == last)
    for child in entries:
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child)
        else:
            child.unlink()


def sync_folder(folder: Path) -> None:
    """Make a rename inside ``folder`` durable (POSIX keeps it in the folder's own metadata)."""
    try:
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return  # a folder we may write but not open: the rename stands, only not yet on disk
    try:
        os.fsync(fd)
    except OSError:
        pass  # some file systems refuse fsync on a folder; nothing more can be done there
    finally:
        os.close(fd)


class Terminated(KeyboardInterrupt):
    """SIGTERM asked this process to stop. A :class:`KeyboardInterrupt`, so every path that already
    cleans up after Ctrl-C (``finally`` blocks, ``except BaseException``) does the same for it."""


class SigtermSeen:
    """Whether SIGTERM (or SIGHUP) arrived within :func:`sigterm_raises`, and which."""

    received = False
    signum = signal.SIGTERM


@contextlib.contextmanager
def sigterm_raises() -> Iterator[SigtermSeen]:
    """Within: SIGTERM raises :class:`Terminated` where the main thread is, instead of ending the
    process on the spot with no clean-up (Python's default). So does SIGHUP (the terminal or
    SSH session closed) unless it was ignored on entry (``nohup``). Further signals of either
    kind are ignored, so the clean-up is not cut short. The handlers found are put back after."""
    seen = SigtermSeen()
    names = [signal.SIGTERM]
    if signal.getsignal(signal.SIGHUP) == signal.SIG_DFL:
        names.append(signal.SIGHUP)

    def on_signal(signum: int, frame: object) -> None:
        for n in names:
            signal.signal(n, signal.SIG_IGN)
        seen.received, seen.signum = True, signal.Signals(signum)
        raise Terminated

    previous = {n: signal.signal(n, on_signal) for n in names}
    try:
        yield seen
    finally:
        for n, handler in previous.items():
            signal.signal(n, handler)


@contextlib.contextmanager
def interrupts_held(said: Callable[[], None]) -> Iterator[None]:
    """Within (main thread only): Ctrl-C, SIGTERM and SIGHUP are noted, not acted on, so a step
    that must not be cut in two (a credential committed, then its bundle written) ends whole;
    ``said`` tells the user at the first. A second Ctrl-C acts at once. On the way out the
    first signal noted takes effect as it would have (its own handler runs)."""
    names = [signal.SIGINT, signal.SIGTERM, signal.SIGHUP]
    previous = {n: signal.getsignal(n) for n in names}
    noted: list[signal.Signals] = []

    def on_signal(signum: int, frame: object) -> None:
        if noted and signum == signal.SIGINT:
            raise KeyboardInterrupt
        noted.append(signal.Signals(signum))
        if len(noted) == 1:
            # stderr may be gone (a pipe's reader killed by the same Ctrl-C, a hang-up):
            # nothing raised in saying so may cut the step short
            with contextlib.suppress(BaseException):
                said()

    for n in names:
        if previous[n] not in (signal.SIG_IGN, None):  # nohup's ignored SIGHUP stays ignored
            signal.signal(n, on_signal)
    try:
        yield
    finally:
        for n, handler in previous.items():
            if handler is not None:
                signal.signal(n, handler)
    if noted:
        first, handler = noted[0], previous[noted[0]]
        if callable(handler):
            handler(first, None)
        elif handler == signal.SIG_DFL:
            signal.raise_signal(first)


def die_with_parent(signum: int, parent: int) -> None:
    """In a child process: have Linux send it ``signum`` when its parent dies, even by SIGKILL
    (a supervisor killed by the OOM killer must not leave nodes and etcd members running);
    exit at once if ``parent`` (the parent's pid, taken before the fork) is gone already."""
    if sys.platform.startswith("linux"):
        pr_set_pdeathsig = 1
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signum)
    if os.getppid() != parent:
        os._exit(1)


NOT_STDOUT = ("- (standard output) is not taken here: give a file path (for a file named -, "
              "its full path)")
"""Said by a command that writes only files when its output is given as ``-``: a file named
``-`` where the user meant standard output is refused rather than made (exit 2)."""


NOT_UNICODE = ("the input holds text that is not valid Unicode: a lone surrogate, from bytes "
               "that are not UTF-8 or a JSON \\uD800-\\uDFFF escape; nothing was changed")


def takes_any_character(stream: object, unknown: bool = False) -> bool:
    """Whether a text stream's encoding is UTF-8 (``unknown`` when it names none)."""
    encoding = getattr(stream, "encoding", None)
    if not encoding:
        return unknown
    return str(encoding).lower().replace("-", "").replace("_", "") == "utf8"


def utf8_stdout() -> bool:
    """Whether standard output takes every character (its encoding is UTF-8)."""
    return takes_any_character(sys.stdout)


def stdout_json(value: Any, **kw: Any) -> str:
    """``value`` as JSON for standard output: \\u escapes where it cannot take every character,
    and, where it can, for each character a terminal would act on or hide (C1 controls such
    as CSI, bidi overrides, zero-width ones: what ``display.printable`` escapes in tables).
    The same JSON to a reader; an issuer's claim value redraws no official's terminal."""
    import json

    from ledger.display import shown_as_is

    text = json.dumps(value, ensure_ascii=not utf8_stdout(), **kw)
    if text.isascii():
        return text
    return "".join(ch if ch == "\n" or shown_as_is(ch) else _json_escape(ch) for ch in text)


def _json_escape(ch: str) -> str:
    code = ord(ch)
    if code < 0x10000:
        return f"\\u{code:04x}"
    code -= 0x10000
    return f"\\u{0xD800 + (code >> 10):04x}\\u{0xDC00 + (code & 0x3FF):04x}"


def _escape_what_cannot_be_shown() -> None:
    """A terminal or pipe that cannot show every character (``LC_ALL=C`` with
    ``PYTHONUTF8=0``, a Latin-1 locale): such characters are written as escapes. Printing one
    raised UnicodeEncodeError after the work was done: a verification whose nonce was then
    spent said nothing, an anchored credential's id was never shown."""
    for stream in (sys.stdout, sys.stderr):
        if isinstance(stream, io.TextIOWrapper) and not takes_any_character(stream):
            stream.reconfigure(errors="backslashreplace")


_SIGPIPE_EXIT = 128 + signal.SIGPIPE
"""The status a shell shows for a tool whose output's reader went away (``… | head -1``): 141."""


class _ReaderGone(BaseException):
    """Standard output's reader went away. Not an OSError, so that no command's ``except
    OSError`` takes it for a file it could not write and says so; clean-up still runs."""


def _named(e: OSError) -> OSError:
    """A write to standard output that failed (a full disk behind ``> file``), named as such: its
    error names no file, and a command that wrote a file first was taken to have failed there."""
    return e if e.filename else type(e)(e.errno, e.strerror, "standard output")


class _GuardedStdout:
    """Standard output that raises :class:`_ReaderGone` in the main thread when its pipe breaks
    (EPIPE); another thread's writes then go nowhere (its traceback would be error text), and
    the main thread's next write or flush raises. Everything else is the stream's own."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self._gone = False

    def _broke(self) -> None:
        self._gone = True
        if threading.current_thread() is threading.main_thread():
            raise _ReaderGone

    def write(self, text: str) -> int:
        if not self._gone:
            try:
                return self._stream.write(text)
            except BrokenPipeError:
                pass
            except OSError as e:
                raise _named(e) from None
        self._broke()
        return len(text)

    def writelines(self, lines: Iterable[str]) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        if not self._gone:
            try:
                self._stream.flush()
                return
            except BrokenPipeError:
                pass
            except OSError as e:
                raise _named(e) from None
        self._broke()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def _reader_gone() -> NoReturn:
    """Exit as a Unix tool does when its output's reader went away: no text, status 141. What
    is still buffered goes to /dev/null (its flush at exit would say the pipe broke)."""
    with contextlib.suppress(OSError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 1)
        os.close(devnull)
    raise SystemExit(_SIGPIPE_EXIT) from None


def confirm(question: str) -> bool:
    """``question`` asked on the terminal (on stderr), no by default: True for y or yes. Input
    that ends before an answer is a no. Ctrl-C raises :class:`KeyboardInterrupt`, so the
    command stops with 130 as at any other point (click's own question called it
    "Aborted!" and exited 1, as for a no)."""
    import click

    try:
        return bool(click.confirm(question, default=False, err=True))
    except click.Abort as e:
        sys.stderr.write("\n")  # end the question's line
        if isinstance(e.__context__, KeyboardInterrupt):
            raise KeyboardInterrupt from None
        return False


def no_core_files() -> None:
    """Allow this process, and every process it starts, no core file (its soft limit 0).

    A node holds its agency's decrypted keys, the credit secret, the evidence key and the
    claims of what it issues and decides; the wallet its passphrase's key and every claim.
    Started where core files are allowed (``ulimit -c unlimited``, a service's
    ``LimitCORE=infinity``), a crash (a fault in LevelDB's C code, an abort) wrote all of that
    in the clear into a core file in its working folder, or into the system's crash store
    (systemd-coredump and apport honour the limit too). The hard limit is left as it was: a
    caller that runs a tool in its own process (a test) is not kept from core files for good."""
    _, hard = resource.getrlimit(resource.RLIMIT_CORE)
    resource.setrlimit(resource.RLIMIT_CORE, (0, hard))


def run_cli(app: Callable[[], object]) -> None:
    """Run a command-line app (Typer) so that SIGTERM stops it as Ctrl-C does, clean-up included,
    and the process then exits with the status a shell expects of SIGTERM (143). Its commands'
    help is reflowed into paragraphs first (:func:`ledger.display.reflow_help`). An
    :class:`OSError` no command handled is one line on stderr and exit 1. Standard output
    whose reader went away (``ledger … | head -1``) ends it quietly, clean-up included, with
    the status a shell shows for SIGPIPE (141), as Unix tools end. The process (and what it
    starts: signature workers, etcd) writes no core file (:func:`no_core_files`)."""
    no_core_files()
    _escape_what_cannot_be_shown()  # before the guard: it reconfigures the stream itself
    stdout = sys.stdout
    if stdout is not None:
        sys.stdout = cast(TextIO, _GuardedStdout(stdout))
    try:
        try:
            _run_cli(app)
        finally:
            if stdout is not None:
                sys.stdout.flush()  # small output waits in the buffer until now
    except _ReaderGone:
        sys.stdout = stdout  # flushed at exit, into /dev/null
        _reader_gone()


def _run_cli(app: Callable[[], object]) -> None:
    import plyvel

    from ledger.display import reflow_help
    from ledger.store import leveldb_words

    reflow_help(app)
    with sigterm_raises() as seen:
        try:
            app()
        except SystemExit:
            if seen.received:
                raise SystemExit(128 + seen.signum) from None
            raise
        except UnicodeEncodeError as e:
            # A lone surrogate: bytes that are not UTF-8 on the command line or in a file name,
            # or a JSON "\ud800" escape; it fails where it is first encoded (a signature, a
            # record), before anything is written. Other encoding errors (a terminal that
            # cannot show a character) are not about the input: left as they are.
            if e.reason != "surrogates not allowed":
                raise
            sys.stderr.write(f"error: {NOT_UNICODE} ({e.object[e.start:e.end]!r})\n")
            raise SystemExit(2) from None
        except plyvel.Error as e:  # a store damaged after it opened (checksums, ADR 47)
            sys.stderr.write(f"error: the store could not be read: {leveldb_words(e)}; restore "
                             "it from a backup (ledger import of an archive)\n")
            raise SystemExit(1) from None
        except OSError as e:
            if e.errno == errno.EPIPE:  # a pipe this process writes to, for an app that lets
                # it through: a Typer app's own main (click's) catches a broken pipe on
                # standard error first and exits 1, quietly, as Rich's consoles do (ADR 68)
                _reader_gone()
            # A full disk, a read-only folder, a file that went away: where a command has no
            # message of its own for it, one line that names the file, not a traceback. The
            # files themselves are written whole or not at all (atomic_output).
            where = f": {e.filename}" if e.filename else ""
            sys.stderr.write(f"error: {e.strerror or e}{where}\n")
            raise SystemExit(1) from None
