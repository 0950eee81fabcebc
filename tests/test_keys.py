"""Tests for ledger.keys: key ids, domain-separated Ed25519, encrypted key files, passphrases."""

from __future__ import annotations

import hashlib
import os
import stat
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import nacl.pwhash
import nacl.signing
import pytest

from ledger import codec, keys
from ledger.errors import KeyFileError, SignatureError
from ledger.keys import (
    DOMAINS,
    PASSPHRASE_ENV,
    PrivateKey,
    PublicKey,
    key_id,
    load_private_key,
    read_passphrase,
    save_private_key,
    signing_message,
)

SEED = hashlib.sha256(b"test seed one").digest()
SEED2 = hashlib.sha256(b"test seed two").digest()
PASS = b"correct horse battery staple"

# RFC 8032 §7.1 TEST 1
RFC_SEED = bytes.fromhex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
RFC_PUB = bytes.fromhex("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a")
RFC_SIG = bytes.fromhex(
    "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46b"
    "d25bf5f0595bbe24655141438e7a100b"
)


@pytest.fixture
def key() -> PrivateKey:
    return PrivateKey(SEED)


# --- key ids and raw keys ----------------------------------------------------------------------


def test_key_id_is_sha256_of_raw_public_key(key: PrivateKey) -> None:
    raw = bytes(nacl.signing.SigningKey(SEED).verify_key)
    assert key.public.raw == raw
    assert key_id(raw) == hashlib.sha256(raw).digest()
    assert key.kid == hashlib.sha256(raw).digest()
    assert key.public.kid == key.kid
    assert len(key.kid) == 32


def test_rfc8032_vector() -> None:
    k = PrivateKey(RFC_SEED)
    assert k.public.raw == RFC_PUB
    assert k.sign_raw(b"") == RFC_SIG
    k.public.verify_raw(b"", RFC_SIG)
    assert k.seed == RFC_SEED


def test_distinct_seeds_distinct_keys() -> None:
    assert PrivateKey(SEED).kid != PrivateKey(SEED2).kid
    assert PrivateKey(SEED).kid == PrivateKey(SEED).kid


def test_generate_gives_fresh_keys() -> None:
    a, b = PrivateKey.generate(), PrivateKey.generate()
    assert a.kid != b.kid
    assert len(a.seed) == 32


@pytest.mark.parametrize("n", [0, 31, 33, 64])
def test_seed_and_public_key_lengths(n: int) -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        PrivateKey(b"\x01" * n)
    with pytest.raises(ValueError, match="32 bytes"):
        PublicKey(b"\x01" * n)


def test_public_key_must_be_bytes() -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        PublicKey(bytearray(32))  # type: ignore[arg-type]


def test_repr_does_not_leak_seed(key: PrivateKey) -> None:
    text = repr(key)
    assert SEED.hex() not in text
    assert SEED.hex()[:16] not in text
    assert key.kid.hex()[:16] in text


# --- signing -----------------------------------------------------------------------------------


def test_signing_message_layout() -> None:
    assert signing_message("tx", b"abc") == b"credledger/v1/tx\x00abc"
    assert signing_message("checkpoint", b"") == b"credledger/v1/checkpoint\x00"
    with pytest.raises(ValueError, match="domain"):
        signing_message("block", b"x")
    with pytest.raises(ValueError, match="domain"):
        signing_message("", b"x")


def test_sign_verify(key: PrivateKey) -> None:
    sig = key.sign("tx", b"payload")
    assert len(sig) == 64
    assert key.public.verify("tx", b"payload", sig) is None
    # the signature is over the domain-prefixed message
    key.public.verify_raw(signing_message("tx", b"payload"), sig)
    nacl.signing.VerifyKey(key.public.raw).verify(b"credledger/v1/tx\x00payload", sig)


def test_signatures_are_deterministic(key: PrivateKey) -> None:
    assert key.sign("tx", b"m") == key.sign("tx", b"m")


@pytest.mark.parametrize("other", sorted(DOMAINS - {"tx"}))
def test_domain_separation(key: PrivateKey, other: str) -> None:
    sig = key.sign("tx", b"payload")
    with pytest.raises(SignatureError):
        key.public.verify(other, b"payload", sig)


def test_domain_separation_from_raw(key: PrivateKey) -> None:
    raw_sig = key.sign_raw(b"payload")
    with pytest.raises(SignatureError):
        key.public.verify("tx", b"payload", raw_sig)
    with pytest.raises(SignatureError):
        key.public.verify_raw(b"payload", key.sign("tx", b"payload"))


def test_domain_boundary_is_unambiguous(key: PrivateKey) -> None:
    # "tx" + NUL + "..." can never collide with another domain's message
    sig = key.sign("checkpoint", b"x")
    with pytest.raises(SignatureError):
        key.public.verify("tx", b"checkpoint\x00x", sig)


def test_wrong_key_fails(key: PrivateKey) -> None:
    other = PrivateKey(SEED2)
    sig = key.sign("tx", b"m")
    with pytest.raises(SignatureError, match=other.kid.hex()[:16]):
        other.public.verify("tx", b"m", sig)


def test_wrong_message_fails(key: PrivateKey) -> None:
    sig = key.sign("tx", b"m")
    with pytest.raises(SignatureError):
        key.public.verify("tx", b"n", sig)
    with pytest.raises(SignatureError):
        key.public.verify("tx", b"m\x00", sig)


@pytest.mark.parametrize("bit", [0, 7, 100, 255, 256, 300, 511])
def test_flipped_signature_bit_fails(key: PrivateKey, bit: int) -> None:
    sig = bytearray(key.sign("tx", b"message"))
    sig[bit // 8] ^= 1 << (bit % 8)
    with pytest.raises(SignatureError):
        key.public.verify("tx", b"message", bytes(sig))


@pytest.mark.parametrize("bit", [0, 9, 63])
def test_flipped_message_bit_fails(key: PrivateKey, bit: int) -> None:
    msg = bytearray(b"message!")
    sig = key.sign("tx", bytes(msg))
    msg[bit // 8] ^= 1 << (bit % 8)
    with pytest.raises(SignatureError):
        key.public.verify("tx", bytes(msg), sig)


@pytest.mark.parametrize("n", [0, 63, 65, 128])
def test_wrong_signature_length(key: PrivateKey, n: int) -> None:
    with pytest.raises(SignatureError, match="64"):
        key.public.verify("tx", b"m", b"\x00" * n)


def test_non_canonical_s_rejected(key: PrivateKey) -> None:
    """Adding the group order L to S gives a malleated signature: libsodium must refuse it."""
    order = 2**252 + 27742317777372353535851937790883648493
    sig = key.sign("tx", b"m")
    s = int.from_bytes(sig[32:], "little") + order
    assert s < 2**256
    malleated = sig[:32] + s.to_bytes(32, "little")
    with pytest.raises(SignatureError):
        key.public.verify("tx", b"m", malleated)


def test_unknown_domain_on_sign(key: PrivateKey) -> None:
    with pytest.raises(ValueError, match="domain"):
        key.sign("nope", b"m")


# --- encrypted key files -----------------------------------------------------------------------


@pytest.fixture
def key_file(tmp_path: Path, key: PrivateKey) -> Path:
    path = tmp_path / "issuer.key"
    save_private_key(path, key, PASS)
    return path


def test_key_file_round_trip(key_file: Path, key: PrivateKey) -> None:
    loaded = load_private_key(key_file, PASS)
    assert loaded.kid == key.kid
    assert loaded.seed == key.seed
    sig = loaded.sign("tx", b"m")
    key.public.verify("tx", b"m", sig)


def test_key_file_mode_0600(key_file: Path) -> None:
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert not key_file.with_suffix(".key.tmp").exists()


def test_key_file_mode_0600_under_permissive_umask(tmp_path: Path, key: PrivateKey) -> None:
    old = os.umask(0)
    try:
        path = tmp_path / "k"
        save_private_key(path, key, PASS)
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_key_file_mode_0600_despite_stale_tmp_file(tmp_path: Path, key: PrivateKey) -> None:
    """A world-readable leftover ``.tmp`` (say from a crash) must not make the key readable."""
    path = tmp_path / "issuer.key"
    stale = tmp_path / "issuer.key.tmp"
    stale.write_bytes(b"old")
    stale.chmod(0o644)
    save_private_key(path, key, PASS)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_private_key(path, PASS).kid == key.kid


def test_key_file_does_not_contain_seed(key_file: Path, key: PrivateKey) -> None:
    blob = key_file.read_bytes()
    assert key.seed not in blob
    assert key.seed.hex().encode() not in blob
    assert PASS not in blob
    # the file is canonical msgpack naming the kdf and the key id (public)
    d = codec.decode(blob)
    assert d["kdf"] == "argon2id"
    assert d["kid"] == key.kid
    assert d["v"] == 1
    # at libsodium's INTERACTIVE cost, not its minimum (a passphrase guessed that much faster)
    assert (d["ops"], d["mem"]) == (nacl.pwhash.argon2id.OPSLIMIT_INTERACTIVE,
                                    nacl.pwhash.argon2id.MEMLIMIT_INTERACTIVE)


def test_key_files_are_salted(tmp_path: Path, key: PrivateKey) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    save_private_key(a, key, PASS)
    save_private_key(b, key, PASS)
    assert codec.decode(a.read_bytes())["salt"] != codec.decode(b.read_bytes())["salt"]
    assert a.read_bytes() != b.read_bytes()


def test_wrong_passphrase(key_file: Path) -> None:
    with pytest.raises(KeyFileError, match="passphrase"):
        load_private_key(key_file, b"wrong horse")


def test_overwrite_keeps_mode_and_new_key(key_file: Path) -> None:
    other = PrivateKey(SEED2)
    save_private_key(key_file, other, b"pass 2")
    assert load_private_key(key_file, b"pass 2").kid == other.kid
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    with pytest.raises(KeyFileError):
        load_private_key(key_file, PASS)


def test_a_key_saved_without_overwrite_never_replaces_one(key_file: Path) -> None:
    """``overwrite=False`` (a new agency's key, say) refuses an existing file and leaves it
    as it was: a second run cannot replace a key the ledger already knows."""
    before = key_file.read_bytes()
    with pytest.raises(FileExistsError):
        save_private_key(key_file, PrivateKey(SEED2), b"pass 2", overwrite=False)
    assert key_file.read_bytes() == before
    fresh = key_file.with_name("fresh.key")
    save_private_key(fresh, PrivateKey(SEED2), b"pass 2", overwrite=False)
    assert load_private_key(fresh, b"pass 2").kid == PrivateKey(SEED2).kid


@pytest.mark.parametrize("field", [{"ops": 0}, {"mem": 8191}, {"salt": bytes(15)},
                                   {"salt": bytes(17)}])
def test_a_key_file_below_libsodium_s_minimums_is_refused_by_its_field(
        key_file: Path, field: dict[str, object]) -> None:
    """A cost below libsodium's minimum or a salt of another size is named as the file's
    fault, before any derivation is tried."""
    _rewrite(key_file, **field)
    with pytest.raises(KeyFileError, match=rf"cannot read key file .*\.{next(iter(field))}"):
        load_private_key(key_file, PASS)


def _rewrite(path: Path, **changes: object) -> None:
    d = codec.decode(path.read_bytes())
    d.update(changes)
    path.write_bytes(codec.encode(d))


def _flip_last(b: bytes) -> bytes:
    return b[:-1] + bytes([b[-1] ^ 0x01])


def test_tampered_box(key_file: Path) -> None:
    d = codec.decode(key_file.read_bytes())
    _rewrite(key_file, box=_flip_last(d["box"]))
    with pytest.raises(KeyFileError):
        load_private_key(key_file, PASS)


def test_tampered_nonce(key_file: Path) -> None:
    d = codec.decode(key_file.read_bytes())
    box = d["box"]
    _rewrite(key_file, box=bytes([box[0] ^ 0x80]) + box[1:])
    with pytest.raises(KeyFileError):
        load_private_key(key_file, PASS)


def test_tampered_salt(key_file: Path) -> None:
    d = codec.decode(key_file.read_bytes())
    _rewrite(key_file, salt=_flip_last(d["salt"]))
    with pytest.raises(KeyFileError):
        load_private_key(key_file, PASS)


def test_tampered_kid(key_file: Path) -> None:
    _rewrite(key_file, kid=PrivateKey(SEED2).kid)
    with pytest.raises(KeyFileError, match="different key"):
        load_private_key(key_file, PASS)


@pytest.mark.parametrize(
    "changes",
    [
        {"v": 2},
        {"kdf": "scrypt"},
        {"salt": b"\x00" * 8},
        {"kid": b"\x00" * 31},
        {"extra": 1},
        {"ops": 0},
        {"mem": 1024},
        {"box": "not bytes"},
    ],
)
def test_tampered_fields(key_file: Path, changes: dict[str, object]) -> None:
    _rewrite(key_file, **changes)
    with pytest.raises(KeyFileError):
        load_private_key(key_file, PASS)


def test_missing_field(key_file: Path) -> None:
    d = codec.decode(key_file.read_bytes())
    del d["salt"]
    key_file.write_bytes(codec.encode(d))
    with pytest.raises(KeyFileError, match="salt"):
        load_private_key(key_file, PASS)


@pytest.mark.parametrize("cut", [0, 1, 10, -1])
def test_truncated_file(key_file: Path, cut: int) -> None:
    blob = key_file.read_bytes()
    key_file.write_bytes(blob[:cut])
    with pytest.raises(KeyFileError):
        load_private_key(key_file, PASS)


def test_garbage_and_missing_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad"
    bad.write_bytes(b"\x00\x01garbage")
    with pytest.raises(KeyFileError):
        load_private_key(bad, PASS)
    with pytest.raises(KeyFileError):
        load_private_key(tmp_path / "absent", PASS)
    big = tmp_path / "big"
    big.write_bytes(codec.encode({"box": b"\x00" * 5000}))
    with pytest.raises(KeyFileError):
        load_private_key(big, PASS)
    # a file over 64 KiB is refused unread, whatever it holds (a key file is ~150 bytes)
    key_file = tmp_path / "issuer.key"
    save_private_key(key_file, PrivateKey(SEED), PASS)
    _rewrite(key_file, box=codec.decode(key_file.read_bytes())["box"] + bytes(64 * 1024))
    with pytest.raises(KeyFileError, match="over the 65536-byte limit"):
        load_private_key(key_file, PASS)


# --- passphrase --------------------------------------------------------------------------------


def test_passphrase_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    assert PASSPHRASE_ENV == "LEDGER_KEY_PASSPHRASE"
    monkeypatch.setenv("LEDGER_KEY_PASSPHRASE", "s3cret pass")
    assert read_passphrase() == b"s3cret pass"
    assert read_passphrase(confirm=True) == b"s3cret pass"


def test_passphrase_env_non_ascii(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LEDGER_KEY_PASSPHRASE", "pässwört")
    assert read_passphrase() == "pässwört".encode()


def test_passphrase_env_bytes_that_are_not_utf8_are_taken_as_given(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A passphrase set in a Latin-1 terminal reaches the environment as bytes that are not
    UTF-8: they are the passphrase, byte for byte (not an encoding error)."""
    monkeypatch.setenv("LEDGER_KEY_PASSPHRASE", os.fsdecode(b"caf\xe9 cr\xe8me"))
    assert read_passphrase() == b"caf\xe9 cr\xe8me"


def test_passphrase_from_a_file_named_in_the_environment(monkeypatch: pytest.MonkeyPatch,
                                                        tmp_path: Path) -> None:
    """``$LEDGER_KEY_PASSPHRASE_FILE`` (a service manager's credential) keeps the secret out of
    the process's environment: read without its trailing newline, from a file only its owner
    may read; anything else is refused with the reason (ADR 47)."""
    import os

    monkeypatch.delenv("LEDGER_KEY_PASSPHRASE", raising=False)
    secret = tmp_path / "pass"
    secret.write_bytes("pässwört  \n".encode())
    secret.chmod(0o600)
    monkeypatch.setenv("LEDGER_KEY_PASSPHRASE_FILE", str(secret))
    assert read_passphrase() == "pässwört  ".encode()  # spaces are the passphrase's own
    secret.chmod(0o640)
    with pytest.raises(KeyFileError, match=r"may be read by others.*chmod 600"):
        read_passphrase()
    secret.chmod(0o400)
    assert read_passphrase() == "pässwört  ".encode()
    secret.chmod(0o600)
    for written, meant in ((b"a\r\n", b"a"), (b"a\r", b"a\r"), (b"a\n\n", b"a\n")):
        secret.write_bytes(written)  # one line end, \n or \r\n, is dropped; nothing else
        assert read_passphrase() == meant
    secret.write_bytes("pässwört  \n".encode())
    monkeypatch.setenv("LEDGER_KEY_PASSPHRASE", "other")
    with pytest.raises(KeyFileError, match="both LEDGER_KEY_PASSPHRASE and "
                                           "LEDGER_KEY_PASSPHRASE_FILE are set"):
        read_passphrase()
    monkeypatch.delenv("LEDGER_KEY_PASSPHRASE")
    empty = tmp_path / "empty"
    empty.write_bytes(b"\n")
    empty.chmod(0o600)
    link = tmp_path / "link"
    link.symlink_to(secret)
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo, 0o600)
    for path, said in ((empty, "is empty"), (tmp_path / "none", "cannot read"),
                       (link, "cannot read"), (fifo, "not a regular file"),
                       (tmp_path, "not a regular file")):
        monkeypatch.setenv("LEDGER_KEY_PASSPHRASE_FILE", str(path))
        with pytest.raises(KeyFileError, match=said):
            read_passphrase()
    monkeypatch.setenv("WALLET_PASSPHRASE_FILE", str(secret))  # every tool's variable has one
    assert read_passphrase(env="WALLET_PASSPHRASE") == "pässwört  ".encode()


@pytest.mark.parametrize("mode", [0o604, 0o602, 0o620, 0o610, 0o601])
def test_a_passphrase_file_any_other_user_may_touch_is_refused(monkeypatch: pytest.MonkeyPatch,
                                                              tmp_path: Path, mode: int) -> None:
    """Every group and others bit counts: a passphrase file others may read (or write, or run)
    is refused, not only one its group may read."""
    monkeypatch.delenv("LEDGER_KEY_PASSPHRASE", raising=False)
    secret = tmp_path / "pass"
    secret.write_bytes(b"s3cret\n")
    secret.chmod(mode)
    monkeypatch.setenv("LEDGER_KEY_PASSPHRASE_FILE", str(secret))
    with pytest.raises(KeyFileError, match=f"may be read by others \\(mode {mode:o}\\)"):
        read_passphrase()


def test_env_passphrase_opens_key_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                       key: PrivateKey) -> None:
    monkeypatch.setenv("LEDGER_KEY_PASSPHRASE", "from the environment")
    path = tmp_path / "k"
    save_private_key(path, key, read_passphrase())
    assert load_private_key(path, b"from the environment").kid == key.kid


def test_passphrase_prompt_fallback(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LEDGER_KEY_PASSPHRASE", raising=False)
    answers = iter(["typed", "typed"])
    monkeypatch.setattr(keys.getpass, "getpass", lambda prompt="": next(answers))
    assert read_passphrase(confirm=True) == b"typed"


def test_passphrase_prompt_asks_once_without_confirm(monkeypatch: pytest.MonkeyPatch) -> None:
    """Opening a key asks for its passphrase once; only a new one (``confirm``) is asked again."""
    monkeypatch.delenv("LEDGER_KEY_PASSPHRASE", raising=False)
    asked: list[str] = []

    def getpass(prompt: str = "") -> str:
        asked.append(prompt)
        return "typed" if len(asked) == 1 else "a second answer"

    monkeypatch.setattr(keys.getpass, "getpass", getpass)
    assert read_passphrase("Open: ") == b"typed"
    assert asked == ["Open: "]


def test_passphrase_prompt_mismatch_and_empty(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LEDGER_KEY_PASSPHRASE", raising=False)
    answers = iter(["one", "two"])
    monkeypatch.setattr(keys.getpass, "getpass", lambda prompt="": next(answers))
    with pytest.raises(KeyFileError, match="differ"):
        read_passphrase(confirm=True)
    monkeypatch.setattr(keys.getpass, "getpass", lambda prompt="": "")
    with pytest.raises(KeyFileError, match="empty"):
        read_passphrase()


@pytest.mark.parametrize(("typed", "reason"), [
    ("one\ntwo\n", "the two passphrases differ"),
    ("", "the input ended before one was typed"),
])
def test_the_console_scripts_say_why_there_is_no_passphrase(tmp_path: Path, typed: str,
                                                            reason: str) -> None:
    """Without a terminal getpass reads standard input: a mismatch or the end of the input is
    said in one line (no traceback, no bare "Aborted."), and nothing is created."""
    bin_ = Path(sys.executable).parent
    env = {k: v for k, v in os.environ.items()
           if k not in ("LEDGER_KEY_PASSPHRASE", "WALLET_PASSPHRASE")}
    node = subprocess.run([str(bin_ / "ledger-node"), "demo", "--data", str(tmp_path / "demo")],
                          input=typed, capture_output=True, text=True, env=env, timeout=60,
                          check=False)
    assert node.returncode == 2, node.stderr
    assert reason in node.stderr and "Traceback" not in node.stderr
    assert not (tmp_path / "demo").exists()
    if typed:
        return  # the wallet asks for its passphrase once to open a wallet
    wallet = subprocess.run([str(bin_ / "wallet"), "--wallet", str(tmp_path / "w.db"), "list"],
                            input=typed, capture_output=True, text=True, env=env, timeout=60,
                            check=False)
    assert wallet.returncode == 1, wallet.stderr
    assert reason in wallet.stderr and "Aborted" not in wallet.stderr


@pytest.mark.parametrize("field", [
    {"mem": 1 << 34}, {"ops": 1 << 20},
    # one step over the caps: refused too (they are the largest costs taken)
    {"mem": nacl.pwhash.argon2id.MEMLIMIT_SENSITIVE + 1024},
    {"ops": nacl.pwhash.argon2id.OPSLIMIT_SENSITIVE + 1},
])
def test_a_key_file_asking_for_more_than_the_sensitive_kdf_cost_is_refused(
        key_file: Path, field: dict[str, int]) -> None:
    """A key file names its own Argon2id cost: 16 GiB or a million passes, or one step over
    libsodium's SENSITIVE level, is refused before any memory is taken, as the wallet's caps
    do (ADR 46)."""
    _rewrite(key_file, **field)
    with pytest.raises(KeyFileError, match=rf"\.{next(iter(field))}: \d+ outside \["):
        load_private_key(key_file, PASS)


def test_a_key_file_sealing_something_else_than_a_seed_is_refused(key_file: Path,
                                                                 tmp_path: Path) -> None:
    sealed = keys.seal_secret(b"sixteen bytes!!!", PASS, "tls-key")
    other = tmp_path / "other.key"
    other.write_bytes(sealed)
    with pytest.raises(KeyFileError):  # no kid, a what: not a key file
        load_private_key(other, PASS)
    with pytest.raises(KeyFileError, match="what"):
        keys.open_secret(sealed, PASS, "credit-secret", other)
    # a file naming a key id but sealing 16 bytes: said to be no seed (not a ValueError)
    other.write_bytes(keys._seal({"kid": PrivateKey(SEED2).kid}, b"sixteen bytes!!!", PASS))
    with pytest.raises(KeyFileError, match="holds 16 bytes, not an Ed25519 seed"):
        load_private_key(other, PASS)
    assert keys.open_secret(sealed, PASS, "tls-key", other) == b"sixteen bytes!!!"


# -- found by a mutation round of the node, the verifier and the codec (ADR 54) ----------------

def test_a_passphrase_file_over_4096_bytes_is_refused_not_cut(monkeypatch: pytest.MonkeyPatch,
                                                              tmp_path: Path) -> None:
    """A file named by $LEDGER_KEY_PASSPHRASE_FILE that is over 4096 bytes is no passphrase (a
    key, a certificate named by mistake): refused, never silently cut to its first bytes. At
    exactly 4096 bytes it is read whole (the bound is inclusive)."""
    monkeypatch.delenv("LEDGER_KEY_PASSPHRASE", raising=False)
    secret = tmp_path / "pass"
    monkeypatch.setenv("LEDGER_KEY_PASSPHRASE_FILE", str(secret))
    secret.write_bytes(b"p" * 4096)
    secret.chmod(0o600)
    assert read_passphrase() == b"p" * 4096
    for size in (4097, 4098, 10_000):
        secret.write_bytes(b"p" * size)
        with pytest.raises(KeyFileError, match="over 4096 bytes"):
            read_passphrase()


def _loader(what: str) -> tuple[Callable[[Path], object], type[Exception]]:
    from ledger.sealed import read_evidence_key
    from node.pki import PkiError, _load_key
    from node.service import read_credit_secret
    loaders: dict[str, tuple[Callable[[Path], object], type[Exception]]] = {
        "node key": (lambda p: load_private_key(p, PASS), KeyFileError),
        "evidence key": (lambda p: read_evidence_key(p, PASS), KeyFileError),
        "credit secret": (lambda p: read_credit_secret(p, PASS), KeyFileError),
        "TLS key": (lambda p: _load_key(p, PASS), PkiError)}
    return loaders[what]


@pytest.mark.parametrize("what", ["node key", "evidence key", "credit secret", "TLS key"])
def test_a_key_or_secret_file_that_is_no_regular_file_or_too_large_is_refused_unread(
        tmp_path: Path, what: str) -> None:
    """Whoever can write the keys folder could plant a FIFO (a start that hangs), a link to a
    device that never ends, or a file of gigabytes (read whole into memory): each is refused by
    what it is, before a byte is read (ADR 74)."""
    load, error = _loader(what)
    device = tmp_path / "device.key"
    device.symlink_to(os.devnull)
    with pytest.raises(error, match="not a regular file"):
        load(device)
    big = tmp_path / "big.key"
    with big.open("wb") as f:
        f.truncate(1 << 30)  # sparse: a gigabyte that takes no room
    with pytest.raises(error, match="1073741824 bytes, over the 65536-byte limit"):
        load(big)
