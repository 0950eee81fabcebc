"""Files written whole or not at all (``ledger.files``), and a SIGTERM in the middle of a long
command (``ledger export``, ``ledger import``) that leaves neither a partial output nor a hidden
temporary file or folder behind. The signals are real: the process sends SIGTERM to itself at a
chosen point of the work, so the test does not depend on how fast the machine is."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from test_api import make_demo

from ledger.files import Terminated, atomic_output, read_capped, sigterm_raises, write_atomic


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_demo(tmp_path_factory.mktemp("files") / "demo-data")


def test_write_atomic_replaces_whole_with_the_mode_given(tmp_path: Path) -> None:
    target = tmp_path / "out.bin"
    target.write_bytes(b"old")
    write_atomic(target, b"new content", 0o640)
    assert target.read_bytes() == b"new content"
    assert stat.S_IMODE(target.stat().st_mode) == 0o640 & ~_umask()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.bin"]


def test_an_error_half_way_leaves_the_target_and_no_temporary_file(tmp_path: Path) -> None:
    target = tmp_path / "out.bin"
    target.write_bytes(b"old")

    def write_half() -> None:
        with atomic_output(target) as f:
            f.write(b"half of the new")
            raise RuntimeError("disk gone")

    with pytest.raises(RuntimeError, match="disk gone"):
        write_half()
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.bin"]


def test_without_overwrite_an_existing_file_is_kept(tmp_path: Path) -> None:
    target = tmp_path / "wallet.db"
    write_atomic(target, b"first", overwrite=False)
    with pytest.raises(FileExistsError):
        write_atomic(target, b"second", overwrite=False)
    assert target.read_bytes() == b"first"
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["wallet.db"]


def test_sigterm_raises_terminated_then_the_old_handler_returns() -> None:
    before = signal.getsignal(signal.SIGTERM)
    seen = []

    def stopped_half_way() -> None:
        with sigterm_raises() as s:
            seen.append(s)
            os.kill(os.getpid(), signal.SIGTERM)  # the handler runs before the next line
            pytest.fail("SIGTERM did not raise")

    with pytest.raises(Terminated):
        stopped_half_way()
    assert seen[0].received
    assert signal.getsignal(signal.SIGTERM) == before


# The CLI run in a child process, which sends itself SIGTERM from inside the work: after the first
# bytes of the archive (export) or after the first block replayed (import).
_CHILD = r"""
import os, signal, sys
import ledger.archive as archive
from ledger.cli import ledger_main

def stop() -> None:
    os.kill(os.getpid(), signal.SIGTERM)

if sys.argv[1] == "export":
    real_export = archive.export_archive
    def export_archive(store, out, progress=None):
        class Writer:
            def write(self, b):
                n = out.write(b)
                stop()
                return n
            def __getattr__(self, name):
                return getattr(out, name)
        return real_export(store, Writer(), progress=progress)
    archive.export_archive = export_archive
else:
    real_replay = archive._replay_all
    def _replay_all(replayer, blocks, total, progress, *more):
        def first_then_stop():
            for i, b in enumerate(blocks):
                if i == 1:
                    stop()
                yield b
        return real_replay(replayer, first_then_stop(), total, progress, *more)
    archive._replay_all = _replay_all
sys.argv = ["ledger", *sys.argv[1:]]
ledger_main()
"""


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", _CHILD, *args], capture_output=True, text=True,
                          timeout=120, check=False)


def test_sigterm_during_export_leaves_no_partial_archive(demo: Path, tmp_path: Path) -> None:
    out = tmp_path / "backup.cla"
    got = _run("export", str(demo), "--out", str(out))
    assert got.returncode == 128 + signal.SIGTERM, got.stderr
    assert "Traceback" not in got.stderr
    assert list(tmp_path.iterdir()) == []  # no archive, and no hidden .backup.cla.*.tmp


def test_sigterm_during_export_keeps_the_archive_it_was_to_replace(demo: Path,
                                                                   tmp_path: Path) -> None:
    out = tmp_path / "backup.cla"
    out.write_bytes(b"last week's backup")
    got = _run("export", str(demo), "--out", str(out), "--force")
    assert got.returncode == 128 + signal.SIGTERM, got.stderr
    assert out.read_bytes() == b"last week's backup"
    assert [p.name for p in tmp_path.iterdir()] == ["backup.cla"]


def test_sigterm_during_import_leaves_no_half_built_store(demo: Path, tmp_path: Path) -> None:
    archive = tmp_path / "backup.cla"
    done = subprocess.run([str(Path(sys.executable).with_name("ledger")), "export", str(demo),
                           "--out", str(archive)], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    got = _run("import", str(archive), "--data", str(tmp_path / "restored"))
    assert got.returncode == 128 + signal.SIGTERM, got.stderr
    assert "Traceback" not in got.stderr
    assert [p.name for p in tmp_path.iterdir()] == ["backup.cla"]  # no .restored.importing-*


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_help_paragraphs_are_reflowed() -> None:
    """A docstring wrapped at 100 columns reads as paragraphs in --help, not broken lines."""
    env = {**os.environ, "COLUMNS": "300", "NO_COLOR": "1"}
    got = subprocess.run([str(Path(sys.executable).with_name("ledger")), "audit", "--help"],
                         capture_output=True, text=True, env=env, timeout=60, check=False)
    assert got.returncode == 0, got.stderr
    # "exit 1" ends one docstring line and "with the expected" starts the next
    assert "(else: a fork, exit 1 with the expected and found roots)" in got.stdout
    # and the paragraphs stay paragraphs: the exit codes are one of their own
    assert any(line.strip().startswith("Exit 0: clean; 1: something is broken")
               for line in got.stdout.splitlines()), got.stdout


def test_ledger_head_help_says_its_exit_codes() -> None:
    """`ledger head` exits 1 when its newest checkpoint is not final or not the head's (ADR 74;
    README), and 2 when the folder is no store; its --help said neither."""
    env = {**os.environ, "COLUMNS": "300", "NO_COLOR": "1"}
    got = subprocess.run([str(Path(sys.executable).with_name("ledger")), "head", "--help"],
                         capture_output=True, text=True, env=env, timeout=60, check=False)
    assert got.returncode == 0, got.stderr
    said = " ".join(got.stdout.split())
    assert "Exit 0: the checkpoint is final and the head's" in said, said
    assert "1: it is not final, or blocks after it are attested by no checkpoint" in said
    assert "2: the folder is not a store" in said, said


def test_sighup_stops_a_tool_as_sigterm_does(demo: Path, tmp_path: Path) -> None:
    """A closed terminal or SSH session sends SIGHUP: the tool cleans up as for SIGTERM and
    exits 129 (it ended on the spot, leaving what SIGTERM no longer leaves)."""
    child = _CHILD.replace("signal.SIGTERM", "signal.SIGHUP")
    out = tmp_path / "chain.archive"
    got = subprocess.run([sys.executable, "-c", child, "export", str(demo), "--out", str(out)],
                         capture_output=True, text=True, timeout=120, check=False)
    assert got.returncode == 128 + signal.SIGHUP, got.stderr
    assert not out.exists() and not list(tmp_path.glob(".*.tmp"))


def test_sighup_ignored_on_entry_stays_ignored() -> None:
    """Under nohup SIGHUP is ignored on entry, and stays so."""
    from ledger.files import sigterm_raises

    before = signal.signal(signal.SIGHUP, signal.SIG_IGN)
    try:
        with sigterm_raises():
            assert signal.getsignal(signal.SIGHUP) == signal.SIG_IGN
    finally:
        signal.signal(signal.SIGHUP, before)


def test_a_file_that_is_not_regular_is_never_replaced(tmp_path: Path) -> None:
    """`--force` over a device or a pipe must not swap it for a file (as root, /dev/full was)."""
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    with pytest.raises(OSError, match="not a regular file"):
        write_atomic(fifo, b"data")
    assert stat.S_ISFIFO(fifo.stat().st_mode)
    assert [p.name for p in tmp_path.iterdir()] == ["pipe"]


def test_an_unhandled_os_error_is_one_line_and_exit_1(capsys: pytest.CaptureFixture[str],
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """A full disk where a command has no message of its own: one line naming the file, exit
    1, no traceback (ADR 47)."""
    import errno

    import typer

    from ledger.files import run_cli

    app = typer.Typer()

    @app.command()
    def write() -> None:
        raise OSError(errno.ENOSPC, "No space left on device", "/full/key.file")

    monkeypatch.setattr(sys, "argv", ["tool"])
    with pytest.raises(SystemExit) as info:
        run_cli(app)
    assert info.value.code == 1
    said = capsys.readouterr().err
    assert said == "error: No space left on device: /full/key.file\n"


def test_a_write_the_disk_cannot_take_names_the_file(tmp_path: Path) -> None:
    """The disk fills while the content is written (here a real file-size limit, EFBIG; a full
    disk's ENOSPC comes the same way, from write or flush, with no file name): the error names
    the file asked for, so `agency cosign` on a full disk said where; the file before stays."""
    import resource

    target = tmp_path / "proposal"
    target.write_bytes(b"old")
    child = ("import sys\nfrom pathlib import Path\nfrom ledger.files import write_atomic\n"
             "try:\n    write_atomic(Path(sys.argv[1]), b'x' * 100_000, 0o644)\n"
             "except OSError as e:\n    print(e.errno, e.filename)\n")
    got = subprocess.run([sys.executable, "-c", child, str(target)], capture_output=True,
                         text=True, check=True,
                         preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_FSIZE,
                                                               (4096, 4096)))
    assert got.stdout == f"27 {target}\n", got.stdout  # 27: EFBIG
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["proposal"]


def test_a_nonce_log_whose_write_failed_closes_quietly(tmp_path: Path) -> None:
    """The digest's write fails (a full disk): add says so; leaving the with block does not
    raise the same error again from the buffer's second flush (ADR 47)."""
    import errno

    from ledger.noncelog import NonceLog, NonceLogError

    class Full:
        def __init__(self, f: object) -> None:
            self.f = f

        def write(self, text: str) -> int:
            return len(text)

        def flush(self) -> None:
            raise OSError(errno.ENOSPC, "No space left on device")

        def fileno(self) -> int:
            return self.f.fileno()  # type: ignore[attr-defined, no-any-return]

        def close(self) -> None:
            self.f.close()  # type: ignore[attr-defined]
            raise OSError(errno.ENOSPC, "No space left on device")

    with NonceLog(tmp_path / "nonces.log") as log:
        log._file = Full(log._file)  # type: ignore[assignment]
        with pytest.raises(NonceLogError, match="No space left on device"):
            log.add("a nonce")
    assert "a nonce" not in log


def test_a_store_damaged_after_it_opened_is_one_line_and_exit_1(
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """A read fails its block checksum (ADR 47): LevelDB's words, not plyvel's bytes repr or a
    traceback."""
    import plyvel
    import typer

    from ledger.files import run_cli

    app = typer.Typer()

    @app.command()
    def read() -> None:
        raise plyvel.CorruptionError(b"Corruption: block checksum mismatch: s/000005.ldb")

    monkeypatch.setattr(sys, "argv", ["tool"])
    with pytest.raises(SystemExit) as info:
        run_cli(app)
    assert info.value.code == 1
    said = capsys.readouterr().err
    assert said.startswith("error: the store could not be read: Corruption: block checksum "
                           "mismatch: s/000005.ldb; restore it from a backup"), said


def test_a_new_file_is_never_placed_over_one_without_hard_links(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Where the file system has no hard links (FAT, exFAT, some mounts), writing a file only
    where none is falls back to renameat2(RENAME_NOREPLACE): the first write lands, a second
    one is FileExistsError, and the first file and the folder are as they were."""
    import errno
    import os

    from ledger.files import write_atomic

    def no_links(*_: object, **__: object) -> None:
        raise PermissionError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(os, "link", no_links)
    target = tmp_path / "out.bin"
    write_atomic(target, b"first", overwrite=False)
    with pytest.raises(FileExistsError):
        write_atomic(target, b"second", overwrite=False)
    assert target.read_bytes() == b"first"
    assert [p.name for p in tmp_path.iterdir()] == ["out.bin"]  # no temporary file left


def _into_a_closed_pipe(*argv: str) -> subprocess.CompletedProcess[str]:
    """Run a console script with standard output a pipe whose reader has gone (as after
    ``… | head -1``): every write to it fails with EPIPE, however fast the machine."""
    read, write = os.pipe()
    os.close(read)
    try:
        return subprocess.run([str(Path(sys.executable).with_name(argv[0])), *argv[1:]],
                              stdout=write, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                              text=True, timeout=120, check=False,
                              env={**os.environ, "COLUMNS": "100"})
    finally:
        os.close(write)


@pytest.mark.parametrize("argv", [
    ("ledger", "--help"), ("agency", "--help"), ("wallet", "--help"), ("ledger-node", "--help"),
    ("ledger", "head", "{demo}"),            # tables (rich), flushed as printed
    ("ledger", "head", "{demo}", "--json"),  # print(), left in the buffer until exit
    ("ledger", "audit", "{demo}", "--workers", "0"),
])
def test_a_reader_that_went_away_ends_a_tool_quietly_with_141(demo: Path,
                                                               argv: tuple[str, ...]) -> None:
    """`ledger head DATA | head -1`: as Unix tools do, no traceback and no error text, and the
    status a shell shows for SIGPIPE (141). It was 1 (typer's own handling of EPIPE), the
    status of a command that failed."""
    got = _into_a_closed_pipe(*(a.format(demo=demo) for a in argv))
    assert (got.returncode, got.stderr) == (128 + signal.SIGPIPE, "")


def test_a_reader_that_stays_gets_everything(demo: Path) -> None:
    got = subprocess.run([str(Path(sys.executable).with_name("ledger")), "head", str(demo),
                          "--json"], capture_output=True, text=True, timeout=120, check=False)
    assert got.returncode == 0, got.stderr
    assert got.stdout.startswith("{") and got.stdout.endswith("}\n")


@pytest.mark.parametrize(("encoding", "takes"), [
    ("utf-8", True), ("UTF-8", True), ("utf_8", True), ("UTF8", True), ("ascii", False),
    ("latin-1", False), (None, "unknown"),
])
def test_a_stream_takes_any_character_when_its_encoding_is_utf8_by_any_spelling(
        encoding: str | None, takes: bool | str) -> None:
    """Python and locales spell UTF-8 several ways (``UTF-8``, ``utf_8``, ``utf8``); each is
    one that takes every character. A stream naming no encoding is what the caller says."""
    from ledger.files import takes_any_character

    class Stream:
        pass

    stream = Stream()
    stream.encoding = encoding  # type: ignore[attr-defined]
    if takes == "unknown":
        assert takes_any_character(stream, unknown=True) is True
        assert takes_any_character(stream) is False
    else:
        assert takes_any_character(stream) is takes


def test_a_step_held_against_interrupts_ends_whole_and_a_second_ctrl_c_acts_at_once() -> None:
    """Within interrupts_held the first Ctrl-C (or SIGTERM) is noted, said once, and acts only
    once the step has ended whole; a second Ctrl-C acts at once (a mutation round, round 15)."""
    from ledger.files import interrupts_held

    said: list[str] = []
    steps: list[str] = []

    def step(*signums: signal.Signals) -> None:
        with interrupts_held(lambda: said.append(f"stopping once done ({len(signums)})")):
            for signum in signums:
                os.kill(os.getpid(), signum)  # the handler runs before the next line
            steps.append(f"ended whole ({len(signums)})")

    before = signal.signal(signal.SIGINT, signal.default_int_handler)  # as in a terminal
    try:
        with pytest.raises(KeyboardInterrupt):  # the first noted acts: Ctrl-C's own handler
            step(signal.SIGINT, signal.SIGTERM)
        assert steps == ["ended whole (2)"] and said == ["stopping once done (2)"]
        with pytest.raises(KeyboardInterrupt):
            step(signal.SIGINT, signal.SIGINT, signal.SIGINT)
        assert steps == ["ended whole (2)"] and said[1:] == ["stopping once done (3)"]
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    finally:
        signal.signal(signal.SIGINT, before)


def test_only_a_lone_surrogate_is_called_text_that_is_not_unicode(
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """A lone surrogate is bad input (exit 2, NOT_UNICODE); a character some codec cannot take
    is not the input's fault, and is left as it is (a mutation round, 15)."""
    import typer

    from ledger.files import NOT_UNICODE, run_cli

    for text, code in (("\udcff", 2), ("naïve", None)):
        app = typer.Typer(pretty_exceptions_enable=False)

        @app.command()
        def encode(text: str = text, codec: str = "utf-8" if code else "ascii") -> None:
            text.encode(codec)

        monkeypatch.setattr(sys, "argv", ["tool"])
        if code:
            with pytest.raises(SystemExit) as info:
                run_cli(app)
            assert info.value.code == code
            assert NOT_UNICODE in capsys.readouterr().err
        else:
            with pytest.raises(UnicodeEncodeError, match="'ascii' codec"):
                run_cli(app)
            assert NOT_UNICODE not in capsys.readouterr().err


_PARENT = """
import os, signal, subprocess, sys, time
from ledger.files import die_with_parent
me = os.getpid()
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"],
                         preexec_fn=lambda: die_with_parent(signal.SIGKILL, me))
print(child.pid, flush=True)
time.sleep(600)
"""


def _gone(pid: int) -> bool:
    """Whether ``pid`` has ended (a zombie its new parent has not reaped yet counts)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except (FileNotFoundError, ProcessLookupError):
        return True


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_a_child_dies_with_its_parent_even_by_sigkill() -> None:
    """A supervisor killed outright (the OOM killer) leaves no signature worker, node or etcd
    member running: its children get the signal the kernel sends when it dies."""
    import time

    with subprocess.Popen([sys.executable, "-c", _PARENT], stdout=subprocess.PIPE,
                          text=True) as parent:
        assert parent.stdout is not None
        child = int(parent.stdout.readline())
        try:
            time.sleep(0.5)
            assert not _gone(child)  # its parent is there: it lives
            parent.kill()
            parent.wait(timeout=60)
            for _ in range(600):  # the kernel's signal comes at once; a busy machine may lag
                if _gone(child):
                    break
                time.sleep(0.05)
            assert _gone(child), "the child outlived its parent"
        finally:
            parent.kill()
            if not _gone(child):
                os.kill(child, signal.SIGKILL)


def test_a_child_whose_parent_is_gone_already_exits_at_once() -> None:
    """The parent's pid is taken before the fork: a child started after its parent died (it is
    now another process's) must not run on alone."""
    r = subprocess.run([sys.executable, "-c", "import signal; from ledger.files import "
                        "die_with_parent; die_with_parent(signal.SIGKILL, 1 << 22); print('on')"],
                       capture_output=True, text=True, timeout=60, check=False)
    assert (r.returncode, r.stdout) == (1, "")
    r = subprocess.run([sys.executable, "-c", "import os, signal; from ledger.files import "
                        "die_with_parent; die_with_parent(signal.SIGKILL, os.getppid()); "
                        "print('on')"], capture_output=True, text=True, timeout=60, check=False)
    assert (r.returncode, r.stdout) == (0, "on\n")


def test_json_for_standard_output_escapes_what_a_terminal_acts_on_or_hides(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """``ledger verify --json`` wrote a claim value (an outside issuer's: the network refuses
    such claims at issuance) raw to a UTF-8 terminal: a C1 control (CSI, U+009B) or a bidi
    override redrew what the official read. Those are JSON escapes now; readable text stays as
    it is, and a reader gets the same value back (helper round 20V)."""
    import io
    import json

    from ledger.files import stdout_json

    value = {"name": "Chen\u009b2J\u202eJie 长盛 \U0001f600\u200b", "n": [1, "a\nb"]}
    monkeypatch.setattr("sys.stdout", io.TextIOWrapper(io.BytesIO(), encoding="utf-8"))
    text = stdout_json(value, indent=1)
    assert json.loads(text) == value
    assert not {"\u009b", "\u202e", "\u200b"} & set(text)
    assert "\\u009b" in text and "\\u202e" in text and "\\u200b" in text
    assert "长盛" in text and "\U0001f600" in text  # readable text stays readable
    monkeypatch.setattr("sys.stdout", io.TextIOWrapper(io.BytesIO(), encoding="ascii"))
    assert stdout_json(value).isascii() and json.loads(stdout_json(value)) == value


def test_read_capped_reads_a_small_file_and_refuses_a_fifo_without_blocking(
        tmp_path: Path) -> None:
    """A FIFO is opened without blocking and refused by what it is: with no writer, a plain
    read would wait for ever (ADR 74)."""
    small = tmp_path / "small"
    small.write_bytes(b"x" * 10)
    assert read_capped(small, 10) == b"x" * 10
    with pytest.raises(OSError, match="10 bytes, over the 9-byte limit"):
        read_capped(small, 9)
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(OSError, match="not a regular file"):
        read_capped(fifo)
    with pytest.raises(FileNotFoundError):
        read_capped(tmp_path / "none")
