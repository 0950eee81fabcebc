"""Archives: export → import round trip, and every kind of damage refused at the right record."""

from __future__ import annotations

import io
import random
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import plyvel
import pytest

from ledger.archive import (
    ArchiveError,
    BlockRecord,
    ReplayError,
    export_archive,
    import_archive,
    read_archive,
    write_archive,
)
from ledger.audit import audit
from ledger.checkpoint import Checkpoint, SignedCheckpoint
from ledger.keys import PrivateKey
from ledger.store import Store

PASS = b"archive-test-passphrase"
T0 = 1_767_225_600


def make_demo(path: Path) -> Path:
    import itertools

    from rich.console import Console

    from node.demo import run_demo

    ticks = itertools.count(T0, 7)
    run_demo(path, PASS, clock=lambda: next(ticks), console=Console(file=io.StringIO()))
    return path


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_demo(tmp_path_factory.mktemp("archive") / "demo")


@pytest.fixture(scope="module")
def archive_bytes(demo: Path) -> bytes:
    buf = io.BytesIO()
    with Store(demo / "ledger", create=False) as store:
        export_archive(store, buf)
    return buf.getvalue()


def _records(data: bytes) -> list[BlockRecord]:
    _, blocks = read_archive(io.BytesIO(data))
    return list(blocks)


def _frame_bounds(data: bytes) -> list[tuple[int, int]]:
    """[start, end) of each frame (length prefix, record, checksum)."""
    out, pos = [], 0
    while pos < len(data):
        n = int.from_bytes(data[pos:pos + 4], "big")
        out.append((pos, pos + 4 + n + 32))
        pos += 4 + n + 32
    return out


def _rewrite(data: bytes, change: Callable[[list[BlockRecord]], list[BlockRecord]]) -> bytes:
    """The archive with its block records changed and *fresh, valid* checksums everywhere."""
    header, blocks = read_archive(io.BytesIO(data))
    buf = io.BytesIO()
    write_archive(buf, header.network, header.log_size, change(list(blocks)))
    return buf.getvalue()


def _import(data: bytes, target: Path) -> None:
    import_archive(io.BytesIO(data), target)


def _dump(path: Path) -> dict[bytes, bytes]:
    db = plyvel.DB(str(path), create_if_missing=False)
    try:
        return {bytes(k): bytes(v) for k, v in db.iterator()}
    finally:
        db.close()


def test_round_trip_identical_store(demo: Path, archive_bytes: bytes, tmp_path: Path) -> None:
    target = tmp_path / "imported"
    head = import_archive(io.BytesIO(archive_bytes), target)
    with Store(demo / "ledger", create=False) as original:
        assert head == original.head
    # Every record (blocks, entries, tx index, Merkle nodes, registry, checkpoints, state, head)
    # is byte for byte the original's.
    assert _dump(target) == _dump(demo / "ledger")
    assert [p.name for p in tmp_path.iterdir()] == ["imported"]


def test_export_is_deterministic(demo: Path, archive_bytes: bytes) -> None:
    buf = io.BytesIO()
    with Store(demo / "ledger", create=False) as store:
        summary = export_archive(store, buf)
    assert buf.getvalue() == archive_bytes
    assert (summary.blocks, summary.txs, summary.checkpoints) == (11, 19, 10)
    assert summary.bytes == len(archive_bytes)


def test_import_refuses_an_existing_folder(archive_bytes: bytes, tmp_path: Path) -> None:
    (tmp_path / "there").mkdir()
    with pytest.raises(ArchiveError, match="already exists"):
        _import(archive_bytes, tmp_path / "there")


def test_an_import_removes_what_a_killed_import_left_and_refuses_a_pipe(
        demo: Path, archive_bytes: bytes, tmp_path: Path) -> None:
    """A killed import (SIGKILL, a power cut) left its hidden store beside the target for good,
    and each rerun another; the next import into the same place removes it, not one another
    process has open (an import running now). A FIFO given as the archive waited for ever for
    a writer; it is refused at once (the archive is read more than once)."""
    import os
    import subprocess
    import sys

    for name in ("0badf00d", "feedface"):
        shutil.copytree(demo / "ledger", tmp_path / f".new.importing-{name}")
    holder = subprocess.Popen(
        [sys.executable, "-c", "import plyvel, sys; db = plyvel.DB(sys.argv[1]); "
         "print('open', flush=True); sys.stdin.read()", str(tmp_path / ".new.importing-feedface")],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "open\n"
        _import(archive_bytes, tmp_path / "new")
    finally:
        holder.communicate("", timeout=60)
    assert sorted(p.name for p in tmp_path.iterdir()) == [".new.importing-feedface", "new"]
    os.mkfifo(tmp_path / "pipe.arch")
    r = subprocess.run([str(Path(sys.executable).parent / "ledger"), "import",
                        str(tmp_path / "pipe.arch"), "--data", str(tmp_path / "other")],
                       capture_output=True, text=True, timeout=60, check=False,
                       stdin=subprocess.DEVNULL)
    assert r.returncode == 2 and "is not a regular file (a pipe or a device)" in " ".join(
        r.stderr.split()), r.stderr
    assert not (tmp_path / "other").exists()


def test_flipped_bytes_are_refused_at_their_record(archive_bytes: bytes, tmp_path: Path) -> None:
    bounds = _frame_bounds(archive_bytes)
    rng = random.Random(20260101)
    for round_ in range(60):
        pos = rng.randrange(len(archive_bytes))
        bad = bytearray(archive_bytes)
        bad[pos] ^= 1 << rng.randrange(8)
        record = next(i for i, (a, b) in enumerate(bounds) if a <= pos < b)
        target = tmp_path / f"r{round_}"
        with pytest.raises(ArchiveError) as info:
            _import(bytes(bad), target)
        assert info.value.record == record, (pos, str(info.value))
        assert not target.exists()
        assert [p for p in tmp_path.iterdir() if p.name.startswith(".")] == []
        arc = tmp_path / "bad.arc"
        arc.write_bytes(bytes(bad))
        if record == 0:  # the header frame: the source is not a readable archive at all
            continue
        report = audit(arc, now=T0)
        assert not report.clean
        broken = report.first_broken
        assert broken is not None
        assert broken.record == record, (pos, str(broken))
        if 1 <= record < len(bounds) - 1:
            assert broken.height == record - 1


@pytest.mark.parametrize("cut", [1, 3, 40, 200, -33, -1])
def test_truncated_archive_is_refused(archive_bytes: bytes, tmp_path: Path, cut: int) -> None:
    data = archive_bytes[:cut] if cut > 0 else archive_bytes[:len(archive_bytes) + cut]
    with pytest.raises(ArchiveError):
        _import(data, tmp_path / "t")
    assert list(tmp_path.iterdir()) == []


def test_deleted_and_swapped_frames_are_caught(archive_bytes: bytes, tmp_path: Path) -> None:
    b = _frame_bounds(archive_bytes)
    frame = [archive_bytes[s:e] for s, e in b]
    deleted = b"".join(frame[:4] + frame[5:])
    swapped = b"".join([*frame[:4], frame[5], frame[4], *frame[6:]])
    for name, data in [("deleted", deleted), ("swapped", swapped)]:
        with pytest.raises(ArchiveError) as info:
            _import(data, tmp_path / name)
        assert info.value.record == 4, str(info.value)


def test_rechecksummed_deletion_is_caught_by_replay(archive_bytes: bytes,
                                                   tmp_path: Path) -> None:
    def drop(blocks: list[BlockRecord]) -> list[BlockRecord]:
        kept = blocks[:3] + blocks[4:]
        return [BlockRecord(i, r.unverified_header, r.unverified_txs, r.unverified_checkpoints)
                for i, r in enumerate(kept)]

    data = _rewrite(archive_bytes, drop)
    with pytest.raises(ReplayError) as info:
        _import(data, tmp_path / "x")
    assert info.value.height == 3
    arc = tmp_path / "x.arc"
    arc.write_bytes(data)
    report = audit(arc, now=T0)
    assert report.first_broken is not None
    assert report.first_broken.height == 3
    assert report.blocks_checked == 3


def test_rechecksummed_swap_is_caught_by_replay(archive_bytes: bytes, tmp_path: Path) -> None:
    def swap(blocks: list[BlockRecord]) -> list[BlockRecord]:
        a, b = blocks[5], blocks[6]
        blocks[5] = BlockRecord(5, b.unverified_header, b.unverified_txs,
                                b.unverified_checkpoints)
        blocks[6] = BlockRecord(6, a.unverified_header, a.unverified_txs,
                                a.unverified_checkpoints)
        return blocks

    with pytest.raises(ReplayError) as info:
        _import(_rewrite(archive_bytes, swap), tmp_path / "x")
    assert info.value.height == 5


def test_rechecksummed_foreign_tx_is_rejected(archive_bytes: bytes, tmp_path: Path) -> None:
    def forge(blocks: list[BlockRecord]) -> list[BlockRecord]:
        r = blocks[7]
        stranger = PrivateKey(b"\x07" * 32)
        from ledger.tx import Tx

        tx = Tx.from_bytes(r.unverified_txs[0])
        forged = tx.sign(stranger)  # an extra signature by an unregistered key
        blocks[7] = BlockRecord(7, r.unverified_header, (forged.raw, *r.unverified_txs[1:]),
                                r.unverified_checkpoints)
        return blocks

    with pytest.raises(ReplayError) as info:
        _import(_rewrite(archive_bytes, forge), tmp_path / "x")
    assert info.value.kind == "tx"
    assert info.value.height == 7
    assert "unknown_key" in str(info.value)


def test_rechecksummed_checkpoint_short_of_quorum(archive_bytes: bytes, demo: Path,
                                                 tmp_path: Path) -> None:
    def weaken(blocks: list[BlockRecord]) -> list[BlockRecord]:
        r = blocks[6]
        signed = SignedCheckpoint.from_text(r.unverified_checkpoints[0])
        weak = SignedCheckpoint(signed.checkpoint, signed.signatures[:1])
        blocks[6] = BlockRecord(6, r.unverified_header, r.unverified_txs,
                                (weak.to_text().encode(),))
        return blocks

    with pytest.raises(ReplayError) as info:
        _import(_rewrite(archive_bytes, weaken), tmp_path / "x")
    assert info.value.kind == "checkpoint"
    assert info.value.height == 6
    assert "1 of 2 required" in str(info.value)


def test_rechecksummed_checkpoint_of_another_root(archive_bytes: bytes, tmp_path: Path) -> None:
    def other(blocks: list[BlockRecord]) -> list[BlockRecord]:
        r = blocks[2]
        signed = SignedCheckpoint.from_text(r.unverified_checkpoints[0])
        cp = signed.checkpoint
        fake = Checkpoint(cp.origin, cp.size, bytes(32)).sign("edu", PrivateKey(b"\x01" * 32))
        blocks[2] = BlockRecord(2, r.unverified_header, r.unverified_txs,
                                (fake.to_text().encode(),))
        return blocks

    with pytest.raises(ReplayError, match="not for the replayed tree head"):
        _import(_rewrite(archive_bytes, other), tmp_path / "x")


@pytest.mark.parametrize(("lines", "said"), [
    ((), "names no block"),
    (("block 2 " + "A" * 43 + "=",), "names another block than the replayed one"),
    (("block 02 " + "A" * 43 + "=",), "is not `block <height> <base64 hash>`"),
    # more digits than int() takes (4,300): a report, not a ValueError out of the replay
    (("block " + "9" * 5000 + " " + "A" * 43 + "=",), "is not `block <height> <base64 hash>`"),
])
def test_rechecksummed_checkpoint_naming_another_block(archive_bytes: bytes, tmp_path: Path,
                                                       lines: tuple[str, ...],
                                                       said: str) -> None:
    """A checkpoint binds the block it ends at, not only the log (ADR 60): one of the replayed
    root that names another block, or none, is refused."""
    def other(blocks: list[BlockRecord]) -> list[BlockRecord]:
        r = blocks[2]
        signed = SignedCheckpoint.from_text(r.unverified_checkpoints[0])
        cp = signed.checkpoint
        fake = SignedCheckpoint(Checkpoint(cp.origin, cp.size, cp.root, lines),
                                signed.signatures)
        blocks[2] = BlockRecord(2, r.unverified_header, r.unverified_txs,
                                (fake.to_text().encode(),))
        return blocks

    with pytest.raises(ReplayError, match=re.escape(said)) as info:
        _import(_rewrite(archive_bytes, other), tmp_path / "x")
    assert info.value.kind == "checkpoint" and info.value.height == 2


@pytest.mark.parametrize("kept", [10_000, 0])
def test_a_checkpoint_line_changed_after_signing_is_refused_by_import(
        archive_bytes: bytes, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        kept: int) -> None:
    """A line whose signer's name was altered no longer counts and the others still make the
    quorum: the import took it, and the audit of the store it built (or of the archive) called
    that line changed, NOT CLEAN (ADR 54). Past the lines the replay keeps, the archive's
    checkpoints are read again."""
    from dataclasses import replace

    from ledger.archive import Replayer

    def alter(blocks: list[BlockRecord]) -> list[BlockRecord]:
        r = blocks[6]
        signed = SignedCheckpoint.from_text(r.unverified_checkpoints[0])
        assert len(signed.signatures) > 2  # the other lines still make the quorum of 2
        last = signed.signatures[-1]
        altered = replace(last, name=last.name[:-1] + "z")
        blocks[6] = BlockRecord(6, r.unverified_header, r.unverified_txs, (SignedCheckpoint(
            signed.checkpoint, (*signed.signatures[:-1], altered)).to_text().encode(),))
        return blocks

    bad = _rewrite(archive_bytes, alter)
    (tmp_path / "bad.archive").write_bytes(bad)
    assert not audit(tmp_path / "bad.archive", now=T0).clean
    monkeypatch.setattr(Replayer, "STRAY_KEPT", kept)
    with pytest.raises(ReplayError, match="no node key the chain ever registered") as info:
        _import(bad, tmp_path / "x")
    assert (info.value.kind, info.value.height, info.value.record) == ("checkpoint", 6, 7)
    assert not (tmp_path / "x").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["bad.archive"]  # no half-built store
    last = len(_records(bad)) - 1
    with pytest.raises(ReplayError, match="no node key the chain ever registered"):
        import_archive(io.BytesIO(bad), tmp_path / "y", until=last)
    # blocks left out (--until-final) may register the key (a rotation): that line is left
    assert import_archive(io.BytesIO(bad), tmp_path / "z", until=8).height == 8


def test_header_fields_are_checked(archive_bytes: bytes, tmp_path: Path) -> None:
    from ledger.block import BlockHeader

    def shift(blocks: list[BlockRecord]) -> list[BlockRecord]:
        r = blocks[4]
        h = BlockHeader.from_bytes(r.unverified_header)
        moved = BlockHeader(h.net, h.height, h.prev_hash, h.time, h.first_index, h.tx_count,
                            bytes(32))
        blocks[4] = BlockRecord(4, moved.to_bytes(), r.unverified_txs, ())
        return blocks

    with pytest.raises(ReplayError) as info:
        _import(_rewrite(archive_bytes, shift), tmp_path / "x")
    assert info.value.height == 4
    assert info.value.reason == "header field log_root differs from the replay"
    assert info.value.found == "00" * 32


def test_more_block_records_than_the_header_says_stop_the_reader(archive_bytes: bytes) -> None:
    """A reader of a stream (``--node``) stops at the record past the header's count, not at
    a trailer that may never come."""
    from ledger.archive import MAGIC, _Writer, check_archive

    header, blocks = read_archive(io.BytesIO(archive_bytes))
    records = list(blocks)
    buf = io.BytesIO()
    w = _Writer(buf)
    w.put({"kind": "header", "magic": MAGIC, "v": 1, "network": header.network, "blocks": 3,
           "log_size": header.log_size})
    for r in records:  # more than 3, each with a valid checksum
        w.put({"kind": "block", "height": r.height, "header": r.unverified_header,
               "txs": list(r.unverified_txs), "checkpoints": list(r.unverified_checkpoints)})
    with pytest.raises(ArchiveError, match="more block records than the header's 3") as info:
        check_archive(io.BytesIO(buf.getvalue()))
    assert info.value.record == 4


def test_not_an_archive(tmp_path: Path) -> None:
    with pytest.raises(ArchiveError, match="record 0"):
        _import(b"\x00\x00\x00\x01\x90" + bytes(32), tmp_path / "x")
    with pytest.raises(ArchiveError, match="empty"):
        _import(b"", tmp_path / "y")


def test_demo_copy_helper_is_independent(demo: Path, tmp_path: Path) -> None:
    """Tamper tests copy the demo folder; the copy must open as a store of its own."""
    copy = tmp_path / "copy"
    shutil.copytree(demo, copy)
    with Store(copy / "ledger", create=False) as s:
        assert s.head is not None
        s.put_records({b"x-copy-only": b"1"})  # a write to the copy ...
    with Store(demo / "ledger", create=False) as original:
        assert original.get(b"x-copy-only") is None  # ... is not in the original


def _until_final(src: Path, target: Path, last: int, blocks: int) -> dict[str, Any]:
    """`ledger import SRC --data TARGET --until-final --json`, which must take the blocks up
    to ``last`` (with its checkpoint) of the archive's ``blocks`` and leave the rest out: its
    JSON."""
    import json
    import subprocess
    import sys

    got = subprocess.run([str(Path(sys.executable).parent / "ledger"), "import", str(src),
                          "--data", str(target), "--until-final", "--json"],
                         capture_output=True, text=True, timeout=120, check=False)
    assert got.returncode == 0, got.stderr
    said: dict[str, Any] = json.loads(got.stdout)
    assert said["height"] == last
    assert said["blocks_left_out"] == blocks - 1 - last
    with Store(target, create=False) as store:
        assert store.head is not None and store.head.height == last
        assert store.checkpoint(store.head.log_size) is not None
    return said


def test_import_until_final_stops_at_the_newest_checkpoint(archive_bytes: bytes,
                                                          tmp_path: Path) -> None:
    """`ledger import --until-final` (how a network's node is restored, ADR 52) takes the
    blocks up to the archive's newest checkpoint (all checked final) and leaves the tail that
    no quorum signed, saying how much; an archive with no checkpoint gives nothing."""
    import subprocess
    import sys

    from ledger.archive import last_checkpointed

    records = _records(archive_bytes)
    marked = [r.height for r in records if r.unverified_checkpoints]
    assert len(marked) >= 2

    def unsigned_tail(blocks: list[BlockRecord]) -> list[BlockRecord]:
        # the checkpoints of the newest marked block and after it taken away: a tail as a
        # network's node holds before its peers' co-signatures arrive
        return [BlockRecord(r.height, r.unverified_header, r.unverified_txs, ())
                if r.height >= marked[-1] else r for r in blocks]

    data = _rewrite(archive_bytes, unsigned_tail)
    assert last_checkpointed(io.BytesIO(data)) == marked[-2]
    src = tmp_path / "tail.archive"
    src.write_bytes(data)
    cli = str(Path(sys.executable).parent / "ledger")
    _until_final(src, tmp_path / "final", marked[-2], len(records))
    whole = import_archive(io.BytesIO(data), tmp_path / "whole")  # without: the whole chain
    assert whole.height == len(records) - 1

    bare = _rewrite(archive_bytes, lambda bs: [BlockRecord(r.height, r.unverified_header,
                                                           r.unverified_txs, ()) for r in bs])
    src.write_bytes(bare)
    got = subprocess.run([cli, "import", str(src), "--data", str(tmp_path / "none"),
                          "--until-final"], capture_output=True, text=True, timeout=120,
                         check=False)
    assert got.returncode == 1
    assert "holds no checkpoint: nothing final to import" in " ".join(got.stderr.split())
    assert not (tmp_path / "none").exists()


def _one_signature(blocks: list[BlockRecord], heights: set[int]) -> list[BlockRecord]:
    """The checkpoints of ``heights`` with their first signature line alone: below quorum, as
    a node holds its own checkpoint before its peers' co-signatures arrive."""
    out = []
    for r in blocks:
        texts = r.unverified_checkpoints
        if r.height in heights:
            signed = SignedCheckpoint.from_text(texts[0])
            assert len(signed.signatures) >= 2
            texts = (SignedCheckpoint(signed.checkpoint, signed.signatures[:1])
                     .to_text().encode(),)
        out.append(BlockRecord(r.height, r.unverified_header, r.unverified_txs, texts,
                               r.record))
    return out


def test_import_until_final_stops_before_a_checkpoint_below_quorum(archive_bytes: bytes,
                                                                   tmp_path: Path) -> None:
    """An export of a live node holds its newest checkpoint with its own signature alone, its
    peers' co-signatures still to come. `--until-final` refused the whole restore ("not
    final") though the checkpoint before it is final; it now stops there, says which
    checkpoint is below quorum, and leaves the rest out (ADR 71). A checkpoint below quorum
    further back stops it before that one: nothing it imports rests on one. A changed
    signature line is still refused."""
    import subprocess
    import sys

    from ledger.archive import NotFinalError, import_final, last_checkpointed

    records = _records(archive_bytes)
    marked = [r.height for r in records if r.unverified_checkpoints]
    assert len(marked) >= 3
    data = _rewrite(archive_bytes, lambda bs: _one_signature(bs, {marked[-1]}))
    assert last_checkpointed(io.BytesIO(data)) == marked[-1]
    with pytest.raises(NotFinalError, match="required signatures"):  # the plain import refuses
        import_archive(io.BytesIO(data), tmp_path / "whole")
    assert not (tmp_path / "whole").exists()
    src = tmp_path / "live.archive"
    src.write_bytes(data)
    cli = str(Path(sys.executable).parent / "ledger")
    said = _until_final(src, tmp_path / "final", marked[-2], len(records))
    assert said["below_quorum"]["height"] == marked[-1]
    assert "1 of" in said["below_quorum"]["reason"]
    words = subprocess.run([cli, "import", str(src), "--data", str(tmp_path / "said"),
                            "--until-final"], capture_output=True, text=True, timeout=120,
                           check=False)
    assert words.returncode == 0, words.stderr
    assert f"stopped before block {marked[-1]}: checkpoint is not final" in " ".join(
        words.stdout.split())

    back = _rewrite(archive_bytes, lambda bs: _one_signature(bs, {marked[1]}))
    head, stopped = import_final(io.BytesIO(back), tmp_path / "back", marked[-1])
    assert head.height == marked[0] and stopped is not None and stopped.height == marked[1]
    # a block no checkpoint covers just before the one below quorum: the import stops at the
    # final checkpoint before both, not at the block before the one below quorum (no quorum
    # signed that block)
    gap = _rewrite(archive_bytes, lambda bs: [
        BlockRecord(r.height, r.unverified_header, r.unverified_txs, (), r.record)
        if r.height == marked[-2] else r for r in _one_signature(bs, {marked[-1]})])
    head, stopped = import_final(io.BytesIO(gap), tmp_path / "gap", marked[-1])
    assert head.height == marked[-3] < marked[-1] - 1
    assert stopped is not None and stopped.height == marked[-1]
    first = _rewrite(archive_bytes, lambda bs: _one_signature(bs, {marked[0]}))
    with pytest.raises(ArchiveError, match="no checkpoint before it is final"):
        import_final(io.BytesIO(first), tmp_path / "first", marked[-1])
    assert not (tmp_path / "first").exists()

    def forged(bs: list[BlockRecord]) -> list[BlockRecord]:  # a line changed: not "pending"
        out = []
        for r in bs:
            texts = r.unverified_checkpoints
            if r.height == marked[-1]:
                text = texts[0].decode()
                body, _, sigs = text.rpartition("\n\n")
                line = sigs.splitlines()[0]
                raw = bytearray(__import__("base64").b64decode(line.split()[-1]))
                raw[-1] ^= 1
                bad = line.rsplit(" ", 1)[0] + " " + __import__("base64").b64encode(
                    bytes(raw)).decode()
                texts = ((body + "\n\n" + sigs.replace(line, bad, 1)).encode(),)
            out.append(BlockRecord(r.height, r.unverified_header, r.unverified_txs, texts,
                                   r.record))
        return out

    with pytest.raises(ReplayError) as refused:
        import_final(io.BytesIO(_rewrite(archive_bytes, forged)), tmp_path / "forged",
                     marked[-1])
    assert not isinstance(refused.value, NotFinalError)
    assert not (tmp_path / "forged").exists()


def test_import_with_a_pinned_genesis_refuses_another_networks_chain(
        archive_bytes: bytes, tmp_path: Path) -> None:
    """`ledger import --genesis HASH` (as `ledger audit --genesis`, ADR 70): an archive of
    another network of the same name replays clean, so only the pinned block 0 tells them
    apart; the import refuses it before building anything (ADR 71)."""
    from typer.testing import CliRunner

    from ledger.block import BlockHeader
    from ledger.cli import ledger_app

    genesis = BlockHeader.from_bytes(_records(archive_bytes)[0].unverified_header).hash.hex()
    src = tmp_path / "a.archive"
    src.write_bytes(archive_bytes)
    runner = CliRunner()
    r = runner.invoke(ledger_app, ["import", str(src), "--data", str(tmp_path / "ok"),
                                   "--genesis", genesis.upper()])
    assert r.exit_code == 0, r.output
    with Store(tmp_path / "ok", create=False) as store:
        assert store.block(0).hash.hex() == genesis
    other = "ab" * 32
    for extra in ([], ["--until-final"]):
        r = runner.invoke(ledger_app, ["import", str(src), "--data", str(tmp_path / "no"),
                                       "--genesis", other, *extra])
        assert r.exit_code == 1, r.output
        said = " ".join(r.output.split())
        assert "block 0 is not the genesis block given (--genesis)" in said
        assert other in said
        assert not (tmp_path / "no").exists()
    r = runner.invoke(ledger_app, ["import", str(src), "--data", str(tmp_path / "no"),
                                   "--genesis", "abc"])
    assert r.exit_code == 2 and "64 hex digits" in r.output, r.output


def _blockless(demo: Path, blocks: list[BlockRecord]) -> list[BlockRecord]:
    """Every checkpoint as the version before ADR 60 wrote it: the root alone, signed by the
    same agencies' node keys (no block line)."""
    from ledger.keys import load_private_key

    keys: dict[str, PrivateKey] = {}
    out = []
    for r in blocks:
        texts = []
        for text in r.unverified_checkpoints:
            signed = SignedCheckpoint.from_text(text)
            cp = signed.checkpoint
            older = SignedCheckpoint(Checkpoint(cp.origin, cp.size, cp.root))
            for s in signed.signatures:
                if s.name not in keys:
                    keys[s.name] = load_private_key(demo / "keys" / f"{s.name}.node.key", PASS)
                older = older.cosign(s.name, keys[s.name])
            texts.append(older.to_text().encode())
        out.append(BlockRecord(r.height, r.unverified_header, r.unverified_txs, tuple(texts),
                               r.record))
    return out


@pytest.mark.parametrize("extra", [1, -1, 1 << 40])
def test_import_until_final_refuses_a_header_whose_log_size_is_not_its_records(
        archive_bytes: bytes, tmp_path: Path, extra: int) -> None:
    """Without --until-final the import refuses a header whose log size is not the replayed
    log's, and the audit calls the archive NOT CLEAN; with it the log size went unread and the
    same file was imported (exit 0), whether or not a block was left out."""
    from ledger.archive import last_checkpointed

    header, blocks = read_archive(io.BytesIO(archive_bytes))
    records = list(blocks)
    buf = io.BytesIO()
    write_archive(buf, header.network, header.log_size + extra, records)
    with pytest.raises(ArchiveError, match=f"header says log size {header.log_size + extra}"):
        last_checkpointed(io.BytesIO(buf.getvalue()))
    # the import told to stop at the last block compares it too
    with pytest.raises(ArchiveError, match=f"header says log size {header.log_size + extra}"):
        import_archive(io.BytesIO(buf.getvalue()), tmp_path / "last",
                       until=len(records) - 1)
    arc = tmp_path / "forged.archive"
    arc.write_bytes(buf.getvalue())
    from typer.testing import CliRunner

    from ledger.cli import ledger_app

    r = CliRunner().invoke(ledger_app, ["import", str(arc), "--data", str(tmp_path / "new"),
                                        "--until-final"])
    assert r.exit_code == 1 and "header says log size" in r.output, r.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["forged.archive"]


def test_checkpoints_of_a_version_before_adr_60_replay(demo: Path, archive_bytes: bytes,
                                                       tmp_path: Path) -> None:
    """A network upgraded across ADR 60 holds final checkpoints its older version signed: the
    root alone, no block line. Its archives import and audit (ADR 62); each such checkpoint
    was a broken checkpoint before, so `ledger import` of the archive stopped at the first one
    and `ledger audit` of every honest upgraded store said NOT CLEAN. They are counted and
    said, and one not final is still refused."""
    older = _rewrite(archive_bytes, lambda blocks: _blockless(demo, blocks))
    head = import_archive(io.BytesIO(older), tmp_path / "x")
    assert head.log_size > 0
    arc = tmp_path / "older.arc"
    arc.write_bytes(older)
    report = audit(arc, now=T0)
    assert report.clean, report.problems
    assert report.blockless == report.checkpoints_checked > 0 and report.blockless_last
    assert report.to_json()["checkpoints_naming_no_block"] == {
        "count": report.blockless, "newest": True}
    from test_audit import SCHEMA, _validate
    _validate(report.to_json(), SCHEMA)  # (the published schema knows the field)
    # a fresh archive's report is as before: no such field
    assert "checkpoints_naming_no_block" not in audit(
        _write(tmp_path / "new.arc", archive_bytes), now=T0).to_json()


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


# -- found by mutation round 8 (the auditor) ------------------------------------------------------


def _framed(data: bytes, *, blocks: int | None = None, heights: list[int] | None = None,
            trailer: dict[str, object] | None = None, with_trailer: bool = True) -> bytes:
    """The archive's records framed again with valid checksums, some of them changed: the
    header's block count, the block records' heights, the trailer's fields (or no trailer)."""
    from ledger.archive import MAGIC, _block_record, _Writer

    header, records = read_archive(io.BytesIO(data))
    recs = list(records)
    buf = io.BytesIO()
    w = _Writer(buf)
    w.put({"kind": "header", "magic": MAGIC, "v": 1, "network": header.network,
           "blocks": header.blocks if blocks is None else blocks, "log_size": header.log_size})
    for i, r in enumerate(recs):
        w.put(_block_record(r) | ({} if heights is None else {"height": heights[i]}))
    if with_trailer:
        w.put({"kind": "trailer", "blocks": len(recs),
               "txs": sum(len(r.unverified_txs) for r in recs),
               "checkpoints": sum(len(r.unverified_checkpoints) for r in recs),
               "sha256": w.digest} | (trailer or {}))
    return buf.getvalue()


def _refused(data: bytes, tmp_path: Path, said: str, record: int) -> None:
    """Import refuses ``data`` at ``record`` saying ``said``; the audit names the same."""
    with pytest.raises(ArchiveError, match=re.escape(said)) as info:
        _import(data, tmp_path / "x")
    assert info.value.record == record, str(info.value)
    assert not (tmp_path / "x").exists()
    report = audit(_write(tmp_path / "x.arc", data), now=T0)
    assert not report.clean and not report.complete
    assert report.first_broken is not None and report.first_broken.kind == "archive"
    assert report.first_broken.record == record and said in report.first_broken.reason
    assert len(report.problems) == 1, report.problems


def _counts(data: bytes) -> tuple[int, int, int]:
    """(blocks, txs, checkpoints) of an archive's records."""
    recs = _records(data)
    return (len(recs), sum(len(r.unverified_txs) for r in recs),
            sum(len(r.unverified_checkpoints) for r in recs))


def test_an_archive_cut_off_before_its_trailer_is_refused(archive_bytes: bytes,
                                                         tmp_path: Path) -> None:
    """Cut at the trailer's frame every frame left checks out and every block replays to the
    header's log size: only the missing trailer says the file was not written to its end."""
    assert _framed(archive_bytes) == archive_bytes
    n = _counts(archive_bytes)[0]
    _refused(_framed(archive_bytes, with_trailer=False), tmp_path,
             f"truncated: no trailer after {n} block record(s)", n + 1)


@pytest.mark.parametrize("change", ["blocks", "txs", "checkpoints", "sha256"])
def test_a_trailer_that_disagrees_with_the_records_is_refused(
        archive_bytes: bytes, tmp_path: Path, change: str) -> None:
    """Its own frame's checksum is valid (anyone can write one): its counts and the running
    checksum it states must still be the records'."""
    have = _counts(archive_bytes)
    if change == "sha256":
        trailer: dict[str, object] = {"sha256": bytes(32)}
        said = "trailer checksum: expected"
    else:
        at = ("blocks", "txs", "checkpoints").index(change)
        stated = tuple(v + (i == at) for i, v in enumerate(have))
        trailer = dict(zip(("blocks", "txs", "checkpoints"), stated, strict=True))
        said = f"trailer counts (blocks, txs, checkpoints) {stated}, header blocks {have[0]}"
    _refused(_framed(archive_bytes, trailer=trailer), tmp_path, said, have[0] + 1)


def test_a_header_that_counts_more_blocks_than_the_file_holds_is_refused(
        archive_bytes: bytes, tmp_path: Path) -> None:
    """The trailer's counts are the records' own, and every block replays to the header's log
    size: the header's block count is the one thing that says a block is missing."""
    have = _counts(archive_bytes)
    _refused(_framed(archive_bytes, blocks=have[0] + 1), tmp_path,
             f"header blocks {have[0] + 1}, found {have}", have[0] + 1)


def test_block_records_out_of_order_are_refused_by_the_reader(archive_bytes: bytes,
                                                             tmp_path: Path) -> None:
    """Heights swapped with valid checksums: the reader names the record (not only the replay,
    which would name a block)."""
    heights = list(range(_counts(archive_bytes)[0]))
    heights[5], heights[6] = 6, 5
    data = _framed(archive_bytes, heights=heights)
    with pytest.raises(ArchiveError, match="block records out of order: expected height 5, "
                       "found 6") as info:
        _import(data, tmp_path / "x")
    assert not isinstance(info.value, ReplayError)
    assert (info.value.record, info.value.height) == (6, 5)


def test_a_frame_longer_than_the_limit_is_refused_before_it_is_read(archive_bytes: bytes,
                                                                   tmp_path: Path) -> None:
    """A length prefix past MAX_RECORD is refused as such, not read (4 GiB into memory)."""
    start, end = _frame_bounds(archive_bytes)[1]
    data = archive_bytes[:start] + (0xFFFFFFFF).to_bytes(4, "big") + archive_bytes[start + 4:end]
    with pytest.raises(ArchiveError, match="length 4294967295 is over the") as info:
        _import(data, tmp_path / "x")
    assert info.value.record == 1


def test_of_two_bad_checkpoints_in_a_block_record_the_first_is_named(archive_bytes: bytes,
                                                                    tmp_path: Path) -> None:
    def two(blocks: list[BlockRecord]) -> list[BlockRecord]:
        r = blocks[6]
        signed = SignedCheckpoint.from_text(r.unverified_checkpoints[0])
        weak = SignedCheckpoint(signed.checkpoint, signed.signatures[:1])
        cp = signed.checkpoint
        other = Checkpoint(cp.origin, cp.size, bytes(32)).sign("edu", PrivateKey(b"\x01" * 32))
        blocks[6] = BlockRecord(6, r.unverified_header, r.unverified_txs,
                                (weak.to_text().encode(), other.to_text().encode()))
        return blocks

    data = _rewrite(archive_bytes, two)
    with pytest.raises(ReplayError, match="1 of 2 required") as info:
        _import(data, tmp_path / "x")
    assert (info.value.kind, info.value.height) == ("checkpoint", 6)
    report = audit(_write(tmp_path / "x.arc", data), now=T0)
    assert report.first_broken is not None and "1 of 2 required" in report.first_broken.reason


def test_lines_no_node_key_can_have_signed_are_refused_at_once_not_held(
        archive_bytes: bytes, tmp_path: Path) -> None:
    """A line by a key not registered at its height is held to the end of the replay (a later
    rotation may register it): the replay held the whole checkpoint, so a line of megabytes
    added to every final checkpoint (the others still make the quorum) grew the auditor's and
    the import's memory with the archive, up to 10,000 checkpoints of 16 per block record. A
    line no node key can have made (a signature of another length than Ed25519's 64 bytes, a
    name longer than any agency's) is refused at its block; of a line that may yet be
    registered, only that line is held."""
    import base64

    from ledger.archive import Replayer

    def pad(blocks: list[BlockRecord], blob: bytes, name: str = "ghost") -> list[BlockRecord]:
        sig = base64.b64encode(bytes([1, 2, 3, 4]) + blob).decode()
        line = f"— {name} {sig}\n".encode()
        return [BlockRecord(b.height, b.unverified_header, b.unverified_txs,
                            tuple(_as_nodes_write(t + line) for t in b.unverified_checkpoints))
                for b in blocks]

    for blob, name in ((bytes(4096), "ghost"), (bytes(64), "g" * 65)):
        bad = _rewrite(archive_bytes, lambda bl, b=blob, n=name: pad(bl, b, n))
        with Store(tmp_path / f"held-{len(name)}") as store:
            replayer = Replayer(store)
            first = _records(bad)
            replayer.apply(first[0])
            with pytest.raises(ReplayError, match="no node key can have made") as info:
                replayer.apply(first[1])
            assert (info.value.kind, info.value.height) == ("checkpoint", 1)
            assert replayer.stray_signatures == []
        with pytest.raises(ReplayError, match="no node key can have made") as info:
            _import(bad, tmp_path / "x")
        assert (info.value.height, info.value.record) == (1, 2)
        assert not (tmp_path / "x").exists()
        report = audit(_write(tmp_path / f"pad-{len(name)}.arc", bad), now=T0)
        assert report.first_broken is not None
        assert (report.first_broken.kind, report.first_broken.height) == ("checkpoint", 1)
    # a well-formed line by a key no block up to here registers: only that line is held
    ghost = _rewrite(archive_bytes, lambda bl: pad(bl, bytes(64)))
    with Store(tmp_path / "ghost") as store:
        replayer = Replayer(store)
        for rec in _records(ghost):
            replayer.apply(rec)
        assert len(replayer.stray_signatures) == 10
        assert {s.name for _, _, c in replayer.stray_signatures for s in c.signatures} == {
            "ghost"}
    with pytest.raises(ReplayError, match="no node key the chain ever registered") as info:
        _import(ghost, tmp_path / "y")
    assert info.value.height == 1


def test_an_archive_changed_before_the_audit_reads_its_checkpoints_again_is_no_crash(
        archive_bytes: bytes, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Past the checkpoint lines the replay keeps (lines by keys not registered at their
    height), the audit reads the archive's checkpoints once more: a file cut short or replaced
    by then raised ArchiveError out of :func:`audit`, a traceback and no report. The source
    could not be read whole (AuditError: exit 2)."""
    import base64

    from ledger.archive import Replayer
    from ledger.audit import AuditError

    sig = base64.b64encode(bytes([1, 2, 3, 4]) + bytes(64)).decode()
    line = f"— ghost {sig}\n".encode()
    data = _rewrite(archive_bytes, lambda blocks: [
        BlockRecord(b.height, b.unverified_header, b.unverified_txs,
                    tuple(_as_nodes_write(t + line) for t in b.unverified_checkpoints))
        for b in blocks])
    src = _write(tmp_path / "ghost.arc", data)
    monkeypatch.setattr(Replayer, "STRAY_KEPT", 0)
    assert audit(src, now=T0).first_broken is not None  # read again whole: the line is found

    def cut_at_the_end(done: int, total: int, txs: int) -> None:
        if done == total:
            src.write_bytes(data[:100])

    with pytest.raises(AuditError, match="changed while it was audited"):
        audit(src, now=T0, progress=cut_at_the_end)


def _as_nodes_write(text: bytes) -> bytes:
    """A checkpoint's text as every node writes it (lines sorted, none twice)."""
    from ledger.checkpoint import SignedCheckpoint

    return SignedCheckpoint.from_text(text).to_text().encode()


def test_a_checkpoint_not_as_nodes_write_it_is_a_changed_record(demo: Path,
                                                                 archive_bytes: bytes,
                                                                 tmp_path: Path) -> None:
    """A checkpoint whose signature lines were repeated or reordered in the archive verifies the
    same (the parser sorts them and drops repeats), and the import stored those bytes as they
    came: a restored node then served a note no node wrote, one a verifier that refuses a
    repeated signature (sumdb/note's) takes for malformed, and the audit called it clean.
    Every node writes its notes one way: another is a changed record (ADR 54), refused by the
    import and named by the audit at its block."""
    def shuffled(blocks: list[BlockRecord]) -> list[BlockRecord]:
        out = []
        for b in blocks:
            texts = []
            for t in b.unverified_checkpoints:
                body, sigs = t.split(b"\n\n")
                lines = sigs.splitlines(keepends=True)
                texts.append(body + b"\n\n" + b"".join([*reversed(lines), lines[0]]))
            out.append(BlockRecord(b.height, b.unverified_header, b.unverified_txs,
                                   tuple(texts)))
        return out

    data = _rewrite(archive_bytes, shuffled)
    assert data != archive_bytes
    with pytest.raises(ReplayError, match="not as every node writes it") as info:
        _import(data, tmp_path / "restored")
    assert (info.value.kind, info.value.height) == ("checkpoint", 1)
    assert not (tmp_path / "restored").exists()
    report = audit(_write(tmp_path / "shuffled.arc", data), now=T0)
    assert report.first_broken is not None
    assert (report.first_broken.kind, report.first_broken.height) == ("checkpoint", 1)
    assert "not as every node writes it" in report.first_broken.reason
    # the same, unchanged, restores the original store byte for byte
    _import(archive_bytes, tmp_path / "same")
    assert _dump(tmp_path / "same") == _dump(demo / "ledger")


def test_ledger_head_of_a_store_whose_newest_blocks_no_checkpoint_covers_is_not_final(
        archive_bytes: bytes, tmp_path: Path) -> None:
    """An archive whose last blocks carry no checkpoint (stripped by whoever served it: no
    quorum attests those blocks, which may be a regrouping of theirs) imports whole, as ADR 71
    leaves it. `ledger head` of that store then said "checkpoint final, signed by civil, edu,
    market" and exited 0, showing the checkpoint of an older block beside the head: a head
    whose own checkpoint is below quorum exits 1 "not final", one with none at all passed.
    It now says the head is not attested and exits 1, in --json too."""
    import json
    import subprocess
    import sys

    records = _records(archive_bytes)
    cut = len(records) // 2

    def strip(bs: list[BlockRecord]) -> list[BlockRecord]:
        return [b if b.height < cut else BlockRecord(b.height, b.unverified_header,
                                                     b.unverified_txs) for b in bs]

    target = tmp_path / "stripped"
    _import(_rewrite(archive_bytes, strip), target)
    with Store(target, create=False) as store:
        assert store.head is not None and store.head.height == len(records) - 1
        head_size = store.head.log_size
        covered = SignedCheckpoint.from_text(store.checkpoint() or b"").checkpoint.size
    assert covered < head_size
    cli = str(Path(sys.executable).parent / "ledger")
    plain = subprocess.run([cli, "head", str(target)], capture_output=True, text=True,
                           timeout=120, check=False)
    assert plain.returncode == 1, plain.stdout
    said = " ".join((plain.stdout + plain.stderr).split())
    assert "checkpoint final" not in said
    assert (f"the newest checkpoint is of log size {covered}, the head's is {head_size}: the "
            f"blocks after block {cut - 1} are attested by no checkpoint") in said
    got = subprocess.run([cli, "head", str(target), "--json"], capture_output=True, text=True,
                         timeout=120, check=False)
    assert got.returncode == 1, got.stdout
    out = json.loads(got.stdout)
    assert out["problem"] is not None and f"log size {covered}" in out["problem"]
    # the whole archive's store is final at its head, as before
    _import(archive_bytes, tmp_path / "whole")
    whole = subprocess.run([cli, "head", str(tmp_path / "whole"), "--json"],
                           capture_output=True, text=True, timeout=120, check=False)
    assert whole.returncode == 0, whole.stderr
    assert json.loads(whole.stdout)["problem"] is None


def test_ledger_import_says_which_blocks_no_checkpoint_attests(archive_bytes: bytes,
                                                              tmp_path: Path) -> None:
    """A plain import of an archive whose last blocks carry no checkpoint said "imported and
    verified 11 blocks" and nothing of how far the chain is final; it now names the blocks no
    checkpoint attests (and `--until-final`), in --json too. A whole archive says nothing."""
    import json
    import subprocess
    import sys

    cut = len(_records(archive_bytes)) // 2
    src = tmp_path / "stripped.arch"
    src.write_bytes(_rewrite(archive_bytes, lambda bs: [
        b if b.height < cut else BlockRecord(b.height, b.unverified_header, b.unverified_txs)
        for b in bs]))
    whole = tmp_path / "whole.arch"
    whole.write_bytes(archive_bytes)
    cli = str(Path(sys.executable).parent / "ledger")

    def run(arch: Path, name: str, *extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([cli, "import", str(arch), "--data", str(tmp_path / name), *extra],
                              capture_output=True, text=True, timeout=120, check=False)

    plain = run(src, "a")
    assert plain.returncode == 0, plain.stderr
    said = " ".join((plain.stdout + plain.stderr).split())
    assert "not final: the newest checkpoint is of log size" in said, said
    assert f"the blocks after block {cut - 1} are attested by no checkpoint" in said, said
    assert "--until-final" in said
    got = json.loads(run(src, "b", "--json").stdout)
    assert f"blocks after block {cut - 1}" in got["unattested"]
    for name, extra in (("c", ()), ("d", ("--until-final",))):
        r = run(src if extra else whole, name, "--json", *extra)
        assert r.returncode == 0 and json.loads(r.stdout)["unattested"] is None, r.stderr
