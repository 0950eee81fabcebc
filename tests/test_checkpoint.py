"""Tests for ledger.checkpoint: C2SP signed notes and tlog checkpoints.

Published vectors live in tests/vectors/note/ (each file names its source repository, path and
commit): golang.org/x/mod/sumdb/note's test suite, the C2SP signed-note example, a real
sum.golang.org checkpoint, and a sigsum checkpoint signed by a fixed seed.
"""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

import ledger.checkpoint as checkpoint_module
from ledger.checkpoint import (
    MAX_SIGNATURES,
    Checkpoint,
    Equivocation,
    NoteSignature,
    SignedCheckpoint,
    find_equivocation,
    note_key_hash,
    open_note,
    parse_vkey,
    sign_note,
    vkey,
)
from ledger.errors import CheckpointError
from ledger.keys import PrivateKey, PublicKey

VECTORS = Path(__file__).parent / "vectors" / "note"
EM = "\u2014"


def load(name: str) -> Any:
    return json.loads((VECTORS / name).read_text(encoding="utf-8"))


GO = load("golang_sumdb_note.json")
C2SP = load("c2sp_signed_note.json")
CPS = load("checkpoints.json")

LOG = PrivateKey(bytes(range(32)))
WITNESS_1 = PrivateKey(bytes(range(1, 33)))
WITNESS_2 = PrivateKey(bytes(range(2, 34)))
STRANGER = PrivateKey(bytes(range(3, 35)))
ORIGIN = "ledger.example/log"
ROOT = hashlib.sha256(b"root").digest()
OTHER_ROOT = hashlib.sha256(b"other root").digest()
VERIFIERS = {ORIGIN: LOG.public, "w1.example": WITNESS_1.public, "w2.example": WITNESS_2.public}


def signed(size: int = 7, root: bytes = ROOT, origin: str = ORIGIN) -> SignedCheckpoint:
    return Checkpoint(origin, size, root).sign(origin, LOG)


def replace_once(text: str, old: str, new: str) -> str:
    assert text.count(old) == 1, (old, text)
    return text.replace(old, new)


# --- published vectors -------------------------------------------------------------------------


def test_vector_files_name_their_sources() -> None:
    for doc in (GO, C2SP, *CPS["checkpoints"], *CPS["unsigned_parse_only"]):
        source = doc["source"]
        assert source["repo"]
        assert source["path"]
        assert len(source["commit"]) == 40


@pytest.mark.parametrize("name", sorted(GO["vkeys"]))
def test_go_vkeys_parse_and_reencode(name: str) -> None:
    text = GO["vkeys"][name]
    parsed_name, public = parse_vkey(text)
    assert parsed_name == name
    assert note_key_hash(name, public.raw).hex() == GO["vkey_hashes"][name]
    assert vkey(name, public.raw) == text


@pytest.mark.parametrize("case", GO["bad_vkeys"], ids=lambda c: c["why"])
def test_go_bad_vkeys_rejected(case: dict[str, str]) -> None:
    with pytest.raises(CheckpointError):
        parse_vkey(case["vkey"])


def test_go_vkey_manglings_rejected() -> None:
    # TestNewVerifier: every proper substring and every single-character increment must fail.
    good = GO["mangle_vkey"]
    parse_vkey(good)
    accepted = []
    for i in range(len(good) + 1):
        for j in range(i + 1, len(good) + 1):
            if (i, j) == (0, len(good)):
                continue
            try:
                parse_vkey(good[i:j])
            except CheckpointError:
                continue
            accepted.append(good[i:j])
    for i in range(len(good)):
        mangled = good[:i] + chr(ord(good[i]) + 1) + good[i + 1 :]
        try:
            parse_vkey(mangled)
        except CheckpointError:
            continue
        accepted.append(mangled)
    assert accepted == []


def go_signer_seed(skey: str) -> tuple[str, bytes]:
    private, key, name, key_hash, material = skey.split("+", 4)
    assert (private, key) == ("PRIVATE", "KEY")
    raw = base64.b64decode(material)
    assert raw[0] == 1
    assert len(raw) == 33
    assert note_key_hash(name, PrivateKey(raw[1:]).public.raw).hex() == key_hash
    return name, raw[1:]


def test_go_sign_reproduces_published_signature() -> None:
    case = GO["sign"]
    name, seed = go_signer_seed(case["skey"])
    assert name == case["name"]
    assert sign_note(case["text"], name, PrivateKey(seed)) == case["signed"]


def case_note(case: dict[str, Any]) -> str | bytes:
    if "note_b64" in case:
        return base64.b64decode(case["note_b64"])
    return str(case["note"])


@pytest.mark.parametrize("case", GO["open"], ids=lambda c: c["name"])
def test_go_open_vectors(case: dict[str, Any]) -> None:
    known = [GO["vkeys"][name] for name in case["known"]]
    note = case_note(case)
    if case["valid"]:
        text, names = open_note(note, known)
        assert text == case["text"]
        assert names == set(case["verified"])
    else:
        with pytest.raises(CheckpointError):
            open_note(note, known)


def test_go_open_vectors_with_mapping_of_keys() -> None:
    # The same verifications through the name -> PublicKey form of `known`.
    keys = {name: parse_vkey(text)[1] for name, text in GO["vkeys"].items()}
    for case in GO["open"]:
        known = {name: keys[name] for name in case["known"]}
        note = case_note(case)
        if case["valid"]:
            assert open_note(note, known)[1] == set(case["verified"]), case["name"]
        else:
            with pytest.raises(CheckpointError):
                open_note(note, known)


def test_c2sp_signed_note_example() -> None:
    name, public = parse_vkey(C2SP["vkey"])
    assert name == C2SP["name"]
    assert note_key_hash(name, public.raw).hex() == C2SP["key_hash"]
    assert vkey(name, public.raw) == C2SP["vkey"]
    assert open_note(C2SP["note"], [C2SP["vkey"]]) == (C2SP["text"], {name})
    tampered = C2SP["note"].replace("example message", "example massage")
    with pytest.raises(CheckpointError, match="invalid signature"):
        open_note(tampered, [C2SP["vkey"]])


@pytest.mark.parametrize("case", CPS["checkpoints"], ids=lambda c: c["name"])
def test_published_checkpoints_verify(case: dict[str, Any]) -> None:
    sc = SignedCheckpoint.from_text(case["note"])
    root = base64.b64decode(case["root_b64"])
    assert sc.checkpoint == Checkpoint(case["origin"], case["size"], root)
    assert sc.to_text() == case["note"]
    if "vkey" in case:
        name, public = parse_vkey(case["vkey"])
    else:
        key = PrivateKey(bytes.fromhex(case["seed_hex"]))
        name, public = case["key_name"], key.public
        # Ed25519 is deterministic: signing the same body reproduces the published note.
        assert sc.checkpoint.sign(name, key).to_text() == case["note"]
    assert sc.verify_quorum({name: public}, 1) == set(case["signers"])
    assert open_note(case["note"], {name: public})[1] == set(case["signers"])
    moved = replace_once(case["note"], f"\n{case['size']}\n", f"\n{case['size'] + 1}\n")
    with pytest.raises(CheckpointError, match="invalid signature"):
        SignedCheckpoint.from_text(moved).signers({name: public})


@pytest.mark.parametrize("case", CPS["unsigned_parse_only"], ids=lambda c: c["name"])
def test_published_placeholder_checkpoint_parses(case: dict[str, Any]) -> None:
    sc = SignedCheckpoint.from_text(case["note"])
    assert (sc.checkpoint.origin, sc.checkpoint.size) == (case["origin"], case["size"])
    assert [s.key_hash.hex() for s in sc.signatures] == [case["key_hash"]]
    assert sc.to_text() == case["note"]
    # A key under that name has a different key hash, so the placeholder is ignored, not failed.
    assert sc.signers({case["origin"]: LOG.public}) == set()


# --- keys ----------------------------------------------------------------------------------------


def test_note_key_hash_definition() -> None:
    raw = LOG.public.raw
    assert note_key_hash("a.example", raw) == hashlib.sha256(b"a.example\n\x01" + raw).digest()[:4]
    assert note_key_hash("a.example", raw) != note_key_hash("b.example", raw)


def test_vkey_round_trip() -> None:
    text = vkey(ORIGIN, LOG.public.raw)
    assert text.startswith(ORIGIN + "+" + note_key_hash(ORIGIN, LOG.public.raw).hex() + "+")
    assert parse_vkey(text) == (ORIGIN, LOG.public)


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "nameonly",
        "name+c74f20a3",
        "Peter Neumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
        "PeterNeumann+C74F20A3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
        "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW\n",
        "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq_LDE4izWy10TW",
    ],
)
def test_parse_vkey_strict(bad: str) -> None:
    with pytest.raises(CheckpointError, match="verifier key"):
        parse_vkey(bad)


def test_key_helpers_reject_bad_input() -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        note_key_hash("a", b"\x00" * 31)
    for name in ("", "a b", "a+b", "a\nb"):
        with pytest.raises(ValueError, match="key name"):
            vkey(name, LOG.public.raw)


# --- signed notes --------------------------------------------------------------------------------


def test_sign_open_round_trip_and_forms_of_known() -> None:
    text = "hello\n\nworld\n"  # empty lines inside the text are allowed
    note = sign_note(text, "a.example", LOG)
    assert note.startswith(text + "\n" + EM + " a.example ")
    assert open_note(note, {"a.example": LOG.public}) == (text, {"a.example"})
    assert open_note(note.encode(), [vkey("a.example", LOG.public.raw)]) == (text, {"a.example"})


@pytest.mark.parametrize("text", ["", "no newline", "tab\there\n", "cr\r\n"])
def test_sign_note_rejects_bad_text(text: str) -> None:
    with pytest.raises(ValueError, match="note text"):
        sign_note(text, "a.example", LOG)


def test_open_note_ignores_unknown_and_rejects_known_invalid() -> None:
    text = "body\n"
    note = sign_note(text, "a.example", LOG)
    stranger_line = sign_note(text, "z.example", STRANGER).split("\n")[-2]
    garbage = NoteSignature("y.example", b"\x00\x01\x02\x03", b"\x55" * 64).to_line()
    assert open_note(note + stranger_line + "\n" + garbage + "\n", {"a.example": LOG.public}) == (
        text,
        {"a.example"},
    )
    # the right name with a different key is a different key hash: ignored, so nothing verifies
    with pytest.raises(CheckpointError, match="no signature from a known key"):
        open_note(note, {"a.example": STRANGER.public})
    forged = NoteSignature("a.example", note_key_hash("a.example", LOG.public.raw), b"\x00" * 64)
    with pytest.raises(CheckpointError, match=r"invalid signature for known key a\.example"):
        open_note(note + forged.to_line() + "\n", {"a.example": LOG.public})


def test_open_note_rejects_ambiguous_or_misused_known() -> None:
    note = sign_note("body\n", "a.example", LOG)
    same = vkey("a.example", LOG.public.raw)
    assert open_note(note, [same, same])[1] == {"a.example"}
    with pytest.raises(TypeError, match="list of verifier keys"):
        open_note(note, same)
    # Key hashes are 4 bytes: these two keys (found by a search) share one under one name.
    # Listed together, they are refused, not the last one taken for both.
    a, b = (PrivateKey(hashlib.sha256(b"collide-%d" % n).digest()) for n in (62044, 192163))
    assert note_key_hash("witness", a.public.raw) == note_key_hash("witness", b.public.raw)
    with pytest.raises(CheckpointError, match="ambiguous verifier key witness"):
        open_note(sign_note("body\n", "witness", b),
                  [vkey("witness", a.public.raw), vkey("witness", b.public.raw)])


def test_open_note_signature_limit() -> None:
    text = "body\n"
    line = sign_note(text, "a.example", LOG).split("\n")[-2] + "\n"
    assert open_note(text + "\n" + line * MAX_SIGNATURES, {"a.example": LOG.public})[0] == text
    with pytest.raises(CheckpointError, match="101 signature lines, at most 100"):
        open_note(text + "\n" + line * (MAX_SIGNATURES + 1), {"a.example": LOG.public})


# --- checkpoint bodies ---------------------------------------------------------------------------


def test_body_format_and_round_trip() -> None:
    cp = Checkpoint(ORIGIN, 20852163, ROOT, ("ext one", "ext—two"))
    expected = f"{ORIGIN}\n20852163\n{base64.b64encode(ROOT).decode()}\next one\next—two\n"
    assert cp.body() == expected.encode()
    assert Checkpoint.from_body(cp.body()) == cp
    assert Checkpoint.from_body(expected) == cp
    assert Checkpoint.from_body(Checkpoint(ORIGIN, 0, ROOT).body()).size == 0


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"origin": ""}, "origin is empty"),
        ({"origin": "a\nb"}, "control character"),
        ({"size": -1}, "outside"),
        ({"size": 1 << 64}, "outside"),
        ({"root": ROOT[:31]}, "31 bytes, expected 32"),
        ({"root": ROOT + b"\x00"}, "33 bytes, expected 32"),
        ({"extensions": ("",)}, "extension line 0 is empty"),
        ({"extensions": ("ok", "a\nb")}, "extension line 1"),
    ],
)
def test_checkpoint_validated_on_construction(kwargs: dict[str, Any], match: str) -> None:
    args: dict[str, Any] = {"origin": ORIGIN, "size": 1, "root": ROOT, **kwargs}
    with pytest.raises(ValueError, match=match):
        Checkpoint(**args)


def test_checkpoint_types_checked() -> None:
    with pytest.raises(TypeError, match="tree size"):
        Checkpoint(ORIGIN, True, ROOT)
    with pytest.raises(TypeError, match="extensions"):
        Checkpoint(ORIGIN, 1, ROOT, ["x"])  # type: ignore[arg-type]


ROOT_B64 = base64.b64encode(ROOT).decode()
URLSAFE_ROOT = base64.urlsafe_b64encode(bytes([0xFB]) * 32).decode()  # has '-' and '_'


@pytest.mark.parametrize(
    ("body", "match"),
    [
        (f"{ORIGIN}\n010\n{ROOT_B64}\n", "leading zeros"),
        (f"{ORIGIN}\n00\n{ROOT_B64}\n", "leading zeros"),
        (f"{ORIGIN}\n+10\n{ROOT_B64}\n", "leading zeros"),
        (f"{ORIGIN}\n-1\n{ROOT_B64}\n", "leading zeros"),
        (f"{ORIGIN}\n 10\n{ROOT_B64}\n", "leading zeros"),
        (f"{ORIGIN}\n1_0\n{ROOT_B64}\n", "leading zeros"),
        (f"{ORIGIN}\n\u0661\u0660\n{ROOT_B64}\n", "leading zeros"),
        (f"{ORIGIN}\n{1 << 64}\n{ROOT_B64}\n", "outside"),
        (f"{ORIGIN}\n10\n{ROOT_B64.rstrip('=')}\n", "base64"),
        (f"{ORIGIN}\n10\n{ROOT_B64[:-2]}B=\n", "canonical"),
        (f"{ORIGIN}\n10\n{URLSAFE_ROOT}\n", "base64"),
        (f"{ORIGIN}\n10\n{ROOT_B64[:-2]}\u00e9=\n", "not standard padded base64"),
        (f"{ORIGIN}\n10\n{base64.b64encode(ROOT[:31]).decode()}\n", "31 bytes, expected 32"),
        (f"{ORIGIN}\n10\n{base64.b64encode(ROOT + b'x').decode()}\n", "33 bytes, expected 32"),
        (f"{ORIGIN}\n10\n", "2 lines, expected at least 3"),
        (f"{ORIGIN}\n10\n{ROOT_B64}", "newline"),
        (f"{ORIGIN}\n10\n{ROOT_B64}\n\next\n", "extension line 0 is empty"),
        (f"\n10\n{ROOT_B64}\n", "origin is empty"),
        (f"{ORIGIN}\r\n10\n{ROOT_B64}\n", "control character"),
        (b"\xff\n10\n" + ROOT_B64.encode() + b"\n", "UTF-8"),
    ],
)
def test_from_body_is_strict(body: str | bytes, match: str) -> None:
    with pytest.raises(CheckpointError, match=match):
        Checkpoint.from_body(body)


# --- signed checkpoints --------------------------------------------------------------------------


def test_sign_round_trip_and_quorum() -> None:
    sc = signed()
    text = sc.to_text()
    assert text.startswith(Checkpoint(ORIGIN, 7, ROOT).body().decode() + "\n" + EM + " ")
    assert SignedCheckpoint.from_text(text) == sc
    assert sc.signers(VERIFIERS) == {ORIGIN}
    assert sc.verify_quorum(VERIFIERS, 1) == {ORIGIN}
    assert open_note(text, VERIFIERS)[1] == {ORIGIN}


def test_cosign_is_deterministic_and_idempotent() -> None:
    cp = Checkpoint(ORIGIN, 7, ROOT)
    one = cp.sign(ORIGIN, LOG).cosign("w1.example", WITNESS_1).cosign("w2.example", WITNESS_2)
    two = cp.sign("w2.example", WITNESS_2).cosign(ORIGIN, LOG).cosign("w1.example", WITNESS_1)
    assert one == two
    assert one.to_text() == two.to_text()
    assert [s.name for s in one.signatures] == sorted([ORIGIN, "w1.example", "w2.example"])
    assert one.cosign("w1.example", WITNESS_1) is one
    assert one.verify_quorum(VERIFIERS, 3) == set(VERIFIERS)


def test_cosign_replaces_a_bad_signature_by_the_same_key() -> None:
    sc = signed()
    forged = NoteSignature(ORIGIN, note_key_hash(ORIGIN, LOG.public.raw), b"\x01" * 64)
    broken = SignedCheckpoint(sc.checkpoint, (forged,))
    with pytest.raises(CheckpointError, match="invalid signature"):
        broken.signers(VERIFIERS)
    assert broken.cosign(ORIGIN, LOG) == sc


def test_tampered_body_rejected() -> None:
    text = signed().to_text()
    for old, new in ((ROOT_B64, base64.b64encode(OTHER_ROOT).decode()), ("\n7\n", "\n8\n")):
        tampered = SignedCheckpoint.from_text(replace_once(text, old, new))
        with pytest.raises(CheckpointError, match=f"invalid signature for known key {ORIGIN}"):
            tampered.signers(VERIFIERS)
        with pytest.raises(CheckpointError, match="invalid signature"):
            tampered.verify_quorum(VERIFIERS, 1)


def test_tampered_signature_rejected() -> None:
    sc = signed()
    sig = sc.signatures[0]
    flipped = sig.signature[:10] + bytes([sig.signature[10] ^ 1]) + sig.signature[11:]
    bad_line = NoteSignature(sig.name, sig.key_hash, flipped).to_line()
    tampered = SignedCheckpoint.from_text(replace_once(sc.to_text(), sig.to_line(), bad_line))
    assert tampered != sc
    with pytest.raises(CheckpointError, match="invalid signature"):
        tampered.signers(VERIFIERS)


def test_wrong_key_is_not_a_signer() -> None:
    sc = signed()
    assert sc.signers({ORIGIN: STRANGER.public}) == set()
    with pytest.raises(CheckpointError, match="0 of 1 required signatures"):
        sc.verify_quorum({ORIGIN: STRANGER.public}, 1)
    with pytest.raises(CheckpointError, match="0 of 1 required signatures"):
        sc.verify_quorum({}, 1)


@pytest.mark.parametrize(
    ("mangle", "match"),
    [
        (lambda t: t.replace("\n\n", "\n"), "no blank line"),
        (lambda t: t[:-1], "does not end in a newline"),
        (lambda t: t + "\n", "signature block is empty"),
        (lambda t: t.replace(EM + " ", "- "), "signature line"),
        (lambda t: t.replace(EM + " ", EM), "signature line"),
        (lambda t: t.replace(f"{ORIGIN} ", f"{ORIGIN}  "), "not standard padded base64"),
        (lambda t: t.replace(f"{ORIGIN} ", "bad+name "), "key name"),
        (lambda t: t[:-3] + "!=\n", "base64"),
        (lambda t: t[:-2] + "\n", "base64"),
        (lambda t: t.replace("\n7\n", "\n07\n"), "leading zeros"),
        (lambda t: t.replace("\n", "\r\n"), "control character"),
    ],
)
def test_from_text_rejects_malformed(mangle: Any, match: str) -> None:
    with pytest.raises(CheckpointError, match=match):
        SignedCheckpoint.from_text(mangle(signed().to_text()))


@pytest.mark.parametrize("line", [f"{EM} {ORIGIN}", f"{EM} {ORIGIN} "])
def test_a_signature_line_without_its_base64_is_malformed(line: str) -> None:
    """A line with a name and no signature says what a signature line is."""
    body = Checkpoint(ORIGIN, 7, ROOT).body().decode()
    with pytest.raises(CheckpointError, match=f"expected '{EM} <name> <base64>'"):
        SignedCheckpoint.from_text(f"{body}\n{line}\n")


@pytest.mark.parametrize("what", [None, 7, ["a\n"]])
def test_a_note_or_body_that_is_not_text_is_refused(what: Any) -> None:
    """Parsers take str or bytes; anything else (a JSON null, a number) is a CheckpointError,
    not an AttributeError from deep inside."""
    with pytest.raises(CheckpointError, match="str or bytes"):
        Checkpoint.from_body(what)
    with pytest.raises(CheckpointError, match="str or bytes"):
        SignedCheckpoint.from_text(what)
    with pytest.raises(CheckpointError, match="str or bytes"):
        open_note(what, VERIFIERS)


@pytest.mark.parametrize(("text", "match"), [
    ("unit\x1fseparator\n", "control character"),
    ("lone \ud800 surrogate\n", "lone surrogate"),
])
def test_open_note_refuses_text_it_could_not_have_signed(text: str, match: str) -> None:
    """Every control character but newline (the last, U+001F, too) and a lone surrogate are
    refused as a CheckpointError before anything is verified."""
    line = sign_note("body\n", "a.example", LOG).split("\n")[-2]
    with pytest.raises(CheckpointError, match=match):
        open_note(f"{text}\n{line}\n", {"a.example": LOG.public})


def test_largest_tree_size_round_trips() -> None:
    """2^64-1 is a tree size (the spec's bound is inclusive)."""
    cp = Checkpoint(ORIGIN, (1 << 64) - 1, ROOT)
    assert Checkpoint.from_body(cp.body()) == cp
    assert b"\n18446744073709551615\n" in cp.body()


def test_short_signature_blob_rejected() -> None:
    body = Checkpoint(ORIGIN, 7, ROOT).body().decode()
    short = base64.b64encode(b"\x00\x01\x02\x03").decode()
    with pytest.raises(CheckpointError, match="4 bytes, expected 4-byte key hash and more"):
        SignedCheckpoint.from_text(f"{body}\n{EM} {ORIGIN} {short}\n")


def test_root_of_31_bytes_in_signed_note_rejected() -> None:
    text = signed().to_text()
    short = base64.b64encode(ROOT[:31]).decode()
    with pytest.raises(CheckpointError, match="31 bytes, expected 32"):
        SignedCheckpoint.from_text(replace_once(text, ROOT_B64, short))


def test_too_many_signatures() -> None:
    sc = signed()
    many = [NoteSignature(f"n{i}.example", b"\x00\x00\x00\x00", b"\x01" * 64) for i in range(101)]
    lines = "".join(s.to_line() + "\n" for s in many)
    with pytest.raises(CheckpointError, match="101 signature lines, at most 100"):
        SignedCheckpoint.from_text(sc.checkpoint.body().decode() + "\n" + lines)
    with pytest.raises(ValueError, match="101 signatures, at most 100"):
        SignedCheckpoint(sc.checkpoint, tuple(many))
    lines_100 = "".join(s.to_line() + "\n" for s in many[:100])
    hundred = SignedCheckpoint.from_text(sc.checkpoint.body().decode() + "\n" + lines_100)
    assert len(hundred.signatures) == 100


def test_duplicate_signature_counts_once() -> None:
    sc = signed().cosign("w1.example", WITNESS_1)
    log_line = next(s for s in sc.signatures if s.name == ORIGIN).to_line()
    doubled = sc.to_text() + log_line + "\n" + log_line + "\n"
    parsed = SignedCheckpoint.from_text(doubled)
    assert parsed == sc
    assert len(parsed.signatures) == 2
    only_log = SignedCheckpoint.from_text(signed().to_text() + log_line + "\n")
    assert only_log.signers(VERIFIERS) == {ORIGIN}
    with pytest.raises(CheckpointError, match="1 of 2 required signatures"):
        only_log.verify_quorum(VERIFIERS, 2)


def test_quorum_short_names_expected_and_found() -> None:
    sc = signed()
    with pytest.raises(CheckpointError) as info:
        sc.verify_quorum(VERIFIERS, 2)
    message = str(info.value)
    assert "1 of 2 required signatures" in message
    assert f"verified ['{ORIGIN}']" in message
    assert "w1.example" in message


@pytest.mark.parametrize("quorum", [0, -1, True])
def test_quorum_below_one_fails_closed(quorum: int) -> None:
    with pytest.raises(CheckpointError, match="quorum must be an int of at least 1"):
        signed().verify_quorum(VERIFIERS, quorum)


def test_unknown_signers_ignored_in_checkpoint() -> None:
    sc = signed().cosign("stranger.example", STRANGER)
    assert len(sc.signatures) == 2
    assert sc.signers(VERIFIERS) == {ORIGIN}


def test_unsigned_checkpoint_has_no_text() -> None:
    with pytest.raises(CheckpointError, match="at least one signature"):
        SignedCheckpoint(Checkpoint(ORIGIN, 1, ROOT)).to_text()


def test_note_signature_validated() -> None:
    with pytest.raises(ValueError, match="4 bytes"):
        NoteSignature("a", b"\x00" * 3, b"\x00")
    with pytest.raises(ValueError, match="non-empty"):
        NoteSignature("a", b"\x00" * 4, b"")
    with pytest.raises(ValueError, match="key name"):
        NoteSignature("a b", b"\x00" * 4, b"\x00")


# --- equivocation --------------------------------------------------------------------------------


def test_equivocation_detected() -> None:
    a = signed(5, ROOT)
    b = signed(5, OTHER_ROOT).cosign("w1.example", WITNESS_1)
    ev = find_equivocation(a, b, VERIFIERS)
    assert isinstance(ev, Equivocation)
    assert (ev.origin, ev.size, ev.root_a, ev.root_b) == (ORIGIN, 5, ROOT, OTHER_ROOT)
    assert ev.signers_a == {ORIGIN}
    assert ev.signers_b == {ORIGIN, "w1.example"}
    data = json.loads(json.dumps(ev.to_dict()))
    assert data == {
        "origin": ORIGIN,
        "size": 5,
        "root_a": ROOT_B64,
        "root_b": base64.b64encode(OTHER_ROOT).decode(),
        "note_a": a.to_text(),
        "note_b": b.to_text(),
        "signers_a": [ORIGIN],
        "signers_b": [ORIGIN, "w1.example"],
    }
    # the evidence stands on its own: both notes re-verify
    assert SignedCheckpoint.from_text(data["note_a"]).verify_quorum(VERIFIERS, 1) == {ORIGIN}
    assert SignedCheckpoint.from_text(data["note_b"]).checkpoint.root == OTHER_ROOT


def test_no_equivocation_when_consistent_or_incomparable() -> None:
    a = signed(5, ROOT)
    assert find_equivocation(a, signed(5, ROOT).cosign("w1.example", WITNESS_1), VERIFIERS) is None
    assert find_equivocation(a, signed(6, OTHER_ROOT), VERIFIERS) is None
    elsewhere = signed(5, OTHER_ROOT, origin="other.example/log")
    assert find_equivocation(a, elsewhere, VERIFIERS) is None


def test_no_equivocation_without_known_signatures() -> None:
    a = signed(5, ROOT)
    by_stranger = Checkpoint(ORIGIN, 5, OTHER_ROOT).sign("stranger.example", STRANGER)
    assert find_equivocation(a, by_stranger, VERIFIERS) is None
    assert find_equivocation(by_stranger, a, VERIFIERS) is None
    assert find_equivocation(a, signed(5, OTHER_ROOT), {}) is None
    forged = NoteSignature(ORIGIN, note_key_hash(ORIGIN, LOG.public.raw), b"\x02" * 64)
    bad = SignedCheckpoint(Checkpoint(ORIGIN, 5, OTHER_ROOT), (forged,))
    with pytest.raises(CheckpointError, match="invalid signature"):
        find_equivocation(a, bad, VERIFIERS)


def test_equivocation_needs_different_checkpoints() -> None:
    with pytest.raises(ValueError, match="two different checkpoints"):
        Equivocation(ORIGIN, 1, ROOT, ROOT, "", "")
    a = signed(5, ROOT)
    with pytest.raises(ValueError, match="two different checkpoints"):
        Equivocation(ORIGIN, 5, ROOT, ROOT, a.to_text(), a.cosign("w1.example", WITNESS_1)
                     .to_text())


def test_no_equivocation_across_origins_even_signed_by_a_known_key() -> None:
    """Two logs' checkpoints of one size are not evidence, even when a key we know signed both."""
    a = signed(5, ROOT)
    other_log = Checkpoint("other.example/log", 5, OTHER_ROOT).sign(ORIGIN, LOG)
    assert other_log.signers(VERIFIERS) == {ORIGIN}
    assert find_equivocation(a, other_log, VERIFIERS) is None
    assert find_equivocation(other_log, a, VERIFIERS) is None


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"origin": ""}, "origin is empty"),
    ({"origin": "a\nb"}, "control character"),
    ({"size": -1}, "tree size"),
    ({"size": True}, "tree size"),
    ({"root_a": ROOT[:31]}, "roots are 32 bytes"),
    ({"root_b": OTHER_ROOT + b"\x00"}, "roots are 32 bytes"),
])
def test_equivocation_validated_on_construction(kwargs: dict[str, Any], match: str) -> None:
    """Evidence is checked as a Checkpoint is: origin a line, size a non-negative int (not a
    bool), both roots 32 bytes."""
    args: dict[str, Any] = {"origin": ORIGIN, "size": 5, "root_a": ROOT, "root_b": OTHER_ROOT,
                            "note_a": "a\n", "note_b": "b\n", **kwargs}
    with pytest.raises(ValueError, match=match):
        Equivocation(**args)


def test_equivocation_at_size_zero_and_of_unsigned_bodies() -> None:
    """Size 0 is a tree size like any; a note without signatures is compared whole, so two
    bodies of one root naming two blocks are two checkpoints. Signers given as any iterable
    are kept as frozensets, so the evidence is hashable."""
    three = Checkpoint(ORIGIN, 0, ROOT, ("block 3 " + ROOT_B64,)).body().decode()
    four = Checkpoint(ORIGIN, 0, ROOT, ("block 4 " + ROOT_B64,)).body().decode()
    ev = Equivocation(ORIGIN, 0, ROOT, ROOT, three, four, {"w1.example"}, ["w2.example"])
    assert ev.size == 0
    assert ev.signers_a == frozenset({"w1.example"}) and isinstance(ev.signers_a, frozenset)
    assert isinstance(ev.signers_b, frozenset)
    assert hash(ev) == hash(Equivocation(ORIGIN, 0, ROOT, ROOT, three, four, ["w1.example"],
                                         {"w2.example"}))


def test_one_root_in_two_blocks_is_equivocation() -> None:
    """Our checkpoints name the block they end at (ADR 60): two of one root naming two blocks
    are two chains (the same log grouped otherwise), signed both."""
    one = Checkpoint(ORIGIN, 5, ROOT, ("block 3 " + ROOT_B64,)).sign(ORIGIN, LOG)
    two = Checkpoint(ORIGIN, 5, ROOT, ("block 4 " + ROOT_B64,)).sign(ORIGIN, LOG)
    ev = find_equivocation(one, two, VERIFIERS)
    assert ev is not None and ev.root_a == ev.root_b == ROOT
    assert (ev.note_a, ev.note_b) == (one.to_text(), two.to_text())
    assert find_equivocation(one, one.cosign("w1.example", WITNESS_1), VERIFIERS) is None


# --- properties ----------------------------------------------------------------------------------

line_text = st.text(
    alphabet=st.characters(min_codepoint=0x20, codec="utf-8"), min_size=1, max_size=30
)
key_names = st.text(
    alphabet=st.characters(min_codepoint=0x21, codec="utf-8").filter(
        lambda c: not c.isspace() and c != "+"
    ),
    min_size=1,
    max_size=20,
)
signatures = st.builds(
    NoteSignature, key_names, st.binary(min_size=4, max_size=4), st.binary(min_size=1, max_size=80)
)
checkpoints = st.builds(
    Checkpoint,
    line_text,
    st.integers(min_value=0, max_value=(1 << 64) - 1),
    st.binary(min_size=32, max_size=32),
    st.lists(line_text, max_size=3).map(tuple),
)


@given(checkpoints, st.lists(signatures, min_size=1, max_size=6))
def test_text_round_trip(cp: Checkpoint, sigs: list[NoteSignature]) -> None:
    sc = SignedCheckpoint(cp, tuple(sigs))
    text = sc.to_text()
    assert SignedCheckpoint.from_text(text) == sc
    assert SignedCheckpoint.from_text(text.encode()).to_text() == text
    assert Checkpoint.from_body(cp.body()) == cp


@given(st.lists(line_text, min_size=1, max_size=4), key_names)
def test_sign_open_property(lines: list[str], name: str) -> None:
    text = "".join(line + "\n" for line in lines)
    assert open_note(sign_note(text, name, LOG), {name: LOG.public}) == (text, {name})


def test_public_surface() -> None:
    assert sorted(checkpoint_module.__all__) == [
        "Checkpoint",
        "Equivocation",
        "MAX_SIGNATURES",
        "NoteSignature",
        "SignedCheckpoint",
        "find_equivocation",
        "note_key_hash",
        "open_note",
        "parse_vkey",
        "sign_note",
        "vkey",
    ]
    assert isinstance(parse_vkey(vkey("a", LOG.public.raw))[1], PublicKey)


def test_a_name_with_two_known_keys_is_one_signer_of_a_note() -> None:
    """A verifier may hold two keys under one name (a key rotation, as vkey lines): a note
    signed by both names that signer once, so a caller counting names towards a quorum counts
    it once (mutation round 17: a name counted per key went unnoticed)."""
    old, new = WITNESS_1, PrivateKey(hashlib.sha256(b"w1 rotated").digest())
    note = signed().cosign("w1.example", old).cosign("w1.example", new)
    assert len(note.signatures) == 3
    known = [vkey(ORIGIN, LOG.public.raw), vkey("w1.example", old.public.raw),
             vkey("w1.example", new.public.raw)]
    text, names = open_note(note.to_text(), known)
    assert text == note.checkpoint.body().decode()
    assert names == {ORIGIN, "w1.example"}
