"""The network PKI (`ledger-node pki`, node.pki) and the local cluster command."""

from __future__ import annotations

import contextlib
import datetime as dt
import http.server
import os
import shutil
import socket
import ssl
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from clusterkit import etcd_as, free_base
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from ledger.errors import KeyFileError
from ledger.keys import open_secret
from node.cli import peer_tls
from node.cluster import LocalCluster, create_cluster
from node.etcdlog import TlsFiles
from node.pki import (
    CA_VALID_DAYS,
    VALID_DAYS,
    WARN_DAYS,
    PkiError,
    certificate_problem,
    check_request,
    create_pki,
    ensure_crl,
    issue_agency_cert,
    list_certificates,
    lock,
    make_request,
    operator_credentials,
    renew_agency_cert,
    renew_ca,
    resealed_key,
    revoke_agency_cert,
    seal_key_again,
    sweep_stale_runtimes,
    unlock,
)
from node.replication import PeerHttp

BIN = Path(sys.executable).parent
NOW = dt.datetime(2026, 11, 1, tzinfo=dt.UTC)


def test_ca_and_agency_certificates(tmp_path: Path) -> None:
    create_pki(tmp_path / "pki", "district-7", ["civil", "edu"], b"pw", now=NOW)
    ca = x509.load_pem_x509_certificate((tmp_path / "pki" / "ca.crt").read_bytes())
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    # it signs agencies' certificates only, never another CA's
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.path_length == 0
    for agency in ("civil", "edu"):
        cert = x509.load_pem_x509_certificate((tmp_path / "pki" / f"{agency}.crt").read_bytes())
        cert.verify_directly_issued_by(ca)  # raises if not signed by the CA
        assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
        eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        assert {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH} <= set(eku)
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert agency in san.get_values_for_type(x509.DNSName)
        key_file = tmp_path / "pki" / f"{agency}.key"
        assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
        # encrypted at rest as the agencies' key files are (Argon2id), not PEM's PBKDF2
        with pytest.raises(KeyFileError, match="wrong passphrase"):
            open_secret(key_file.read_bytes(), b"not it", "tls-key", key_file)
        key = serialization.load_der_private_key(
            open_secret(key_file.read_bytes(), b"pw", "tls-key", key_file), None)
        assert isinstance(key, ec.EllipticCurvePrivateKey)
        assert key.public_key().public_numbers() == cert.public_key().public_numbers()


def test_wrong_passphrase_and_reuse_are_refused(tmp_path: Path) -> None:
    create_pki(tmp_path / "pki", "n", ["civil"], b"pw", now=NOW)
    with pytest.raises(PkiError, match="wrong passphrase"):
        unlock(tmp_path / "pki", "civil", b"nope")
    with pytest.raises(PkiError, match="not empty"):
        create_pki(tmp_path / "pki", "n", ["edu"], b"pw", now=NOW)
    with pytest.raises(PkiError, match="empty passphrase"):
        create_pki(tmp_path / "other", "n", ["edu"], b"", now=NOW)


def test_an_interrupted_create_leaves_nothing_a_rerun_refuses(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A Ctrl-C (or a full disk) while `pki create` wrote the agencies' certificates left a
    CA and half the agencies in the folder: the rerun was refused ("not empty"), and the
    operator had to find and delete what it wrote. It builds beside the folder and renames it
    into place whole (ADR 71): nothing is left, an empty folder given stays as it was, and a
    rerun makes the whole PKI."""
    import node.pki as pki_module

    real = pki_module.issue_agency_cert
    made: list[str] = []

    def interrupted(folder: Path, agency: str, *args: object, **kw: object) -> object:
        if made:
            raise KeyboardInterrupt  # the second agency's certificate: Ctrl-C
        made.append(agency)
        return real(folder, agency, *args, **kw)  # type: ignore[arg-type]

    given = tmp_path / "given"
    given.mkdir()
    for target in (tmp_path / "pki", given):
        made.clear()
        monkeypatch.setattr(pki_module, "issue_agency_cert", interrupted)
        with pytest.raises(KeyboardInterrupt):
            create_pki(target, "n", ["civil", "edu"], b"pw", now=NOW)
        assert made == ["civil"]
        assert sorted(p.name for p in tmp_path.iterdir()) == ["given"]
        assert not any(given.iterdir())
        monkeypatch.setattr(pki_module, "issue_agency_cert", real)
        create_pki(target, "n", ["civil", "edu"], b"pw", now=NOW)  # the rerun is taken
        assert {"ca.key", "ca.crt", "civil.crt", "edu.crt"} <= {p.name for p in
                                                              target.iterdir()}
        assert stat.S_IMODE(target.stat().st_mode) == 0o700
        if target != given:
            shutil.rmtree(target)


def test_a_pki_create_on_a_full_disk_says_where_not_none(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The disk fills while `pki create` writes a file (simulated at the write, where a full
    tmpfs stops it: the OSError a write raises names no file). The command said "cannot create
    the PKI: None: No space left on device": no folder, and a "None". It names the folder, and
    leaves nothing; the rerun with room makes the PKI."""
    import errno

    from typer.testing import CliRunner

    import node.pki as pki_module
    from node import cli

    real = pki_module.write_atomic
    written: list[str] = []

    def full(path: Path, data: bytes, mode: int, **kw: Any) -> None:
        if written:  # the second file: the disk is full
            raise OSError(errno.ENOSPC, "No space left on device")
        written.append(path.name)
        real(path, data, mode, **kw)

    out = tmp_path / "pki"
    args = ["pki", "create", "--out", str(out), "--network", "n", "--agency", "civil"]
    env = {"LEDGER_KEY_PASSPHRASE": "pki-pw"}
    monkeypatch.setattr(pki_module, "write_atomic", full)
    r = CliRunner().invoke(cli.app, args, env=env)
    said = " ".join(r.output.split())
    assert r.exit_code == 1 and "No space left on device" in said, r.output
    assert "None" not in said and str(out) in said, r.output
    assert not out.exists() and list(tmp_path.iterdir()) == []
    monkeypatch.setattr(pki_module, "write_atomic", real)
    r = CliRunner().invoke(cli.app, args, env=env)
    assert r.exit_code == 0 and (out / "ca.key").is_file(), r.output


def test_an_add_stopped_between_its_key_and_its_certificate_is_taken_again(
        tmp_path: Path) -> None:
    """`pki add` wrote ``<agency>.key``, then ``<agency>.crt``: a stop in between (Ctrl-C, a
    full disk, a power cut) left a key that no certificate names, and every rerun failed on
    it ("File exists"), the operator left to find and delete it by hand. The key, never given
    to anyone, is replaced; the rerun certifies the agency, key and certificate a pair."""
    pki = tmp_path / "pki"
    create_pki(pki, "n", ["civil"], b"pw", now=NOW)
    issue_agency_cert(pki, "edu", b"pw", now=NOW)
    (pki / "edu.crt").unlink()  # what a stop between the two writes leaves
    cert = issue_agency_cert(pki, "edu", b"pw", now=NOW)  # the rerun is taken
    assert _serial(pki / "edu.crt") == cert.serial_number
    assert stat.S_IMODE((pki / "edu.key").stat().st_mode) == 0o600
    runtime = unlock(pki, "edu", b"pw", tmp_path / "rt", now=NOW)  # the key is the cert's
    lock(runtime)
    with pytest.raises(PkiError, match="already has a certificate"):
        issue_agency_cert(pki, "edu", b"pw", now=NOW)
    assert _serial(pki / "edu.crt") == cert.serial_number


def test_a_pem_key_from_before_still_unlocks(tmp_path: Path) -> None:
    """TLS keys written before ADR 46 (PEM, PBKDF2) are still read."""
    create_pki(tmp_path / "pki", "n", ["civil"], b"pw", now=NOW)
    key_file = tmp_path / "pki" / "civil.key"
    der = open_secret(key_file.read_bytes(), b"pw", "tls-key", key_file)
    key = serialization.load_der_private_key(der, None)
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.BestAvailableEncryption(b"pw")))
    rt = unlock(tmp_path / "pki", "civil", b"pw")
    lock(rt)
    with pytest.raises(PkiError, match="wrong passphrase"):
        unlock(tmp_path / "pki", "civil", b"nope")


@pytest.mark.parametrize("bad", ["../escaped", "bad name!", "Civil", ""])
def test_agency_ids_are_checked_before_anything_is_written(tmp_path: Path, bad: str) -> None:
    with pytest.raises(PkiError, match="agency id"):
        create_pki(tmp_path / "pki", "n", ["civil", bad], b"pw", now=NOW)
    assert not (tmp_path / "pki").exists() or not any((tmp_path / "pki").iterdir())
    assert not (tmp_path / "escaped.key").exists()
    with pytest.raises(PkiError, match="named twice"):
        create_pki(tmp_path / "pki", "n", ["civil", "civil"], b"pw", now=NOW)
    assert not (tmp_path / "pki").exists() or not any((tmp_path / "pki").iterdir())


def test_unlock_refuses_expired_mismatched_and_unreadable_certificates(tmp_path: Path) -> None:
    """Checked before any clear key is written: an expired certificate (etcd and peers would
    refuse it mid-run), one not of the key, one not from the CA, a missing or damaged file."""
    pki = tmp_path / "pki"
    create_pki(pki, "n", ["civil", "edu"], b"pw", now=NOW)

    def ours() -> list[Path]:
        """This process's runtime folders of civil: another test process's cluster starts
        and stops civil's nodes meanwhile (ADR 59), each with a folder of its own."""
        made = []
        for folder in Path("/dev/shm").glob("credledger-civil-*"):
            with contextlib.suppress(OSError):
                if (folder / "owner.pid").read_text() == str(os.getpid()):
                    made.append(folder)
        return made

    def refused(match: str, now: dt.datetime = NOW) -> None:
        with pytest.raises(PkiError, match=match):
            unlock(pki, "civil", b"pw", now=now)
        assert ours() == []

    refused("expired on", NOW + dt.timedelta(days=900))
    refused("valid only from", NOW - dt.timedelta(days=1))
    civil = (pki / "civil.crt").read_bytes()
    (pki / "civil.crt").write_bytes((pki / "edu.crt").read_bytes())
    refused("not the certificate of the key")
    (pki / "civil.crt").write_bytes(civil[:200])
    refused("not a PEM certificate")
    other = tmp_path / "other"
    create_pki(other, "n", ["civil"], b"pw", now=NOW)
    (pki / "civil.crt").write_bytes(civil)
    (pki / "ca.crt").rename(tmp_path / "ca.crt")
    refused("no certificate file")
    (pki / "ca.crt").write_bytes((other / "ca.crt").read_bytes())
    refused("not signed by")
    (tmp_path / "ca.crt").replace(pki / "ca.crt")
    lock(unlock(pki, "civil", b"pw", now=NOW))
    with pytest.raises(PkiError, match="agency id"):
        issue_agency_cert(pki, "../x", b"pw", now=NOW)


def test_unlock_refuses_a_certificate_of_its_key_signed_by_another_ca(tmp_path: Path) -> None:
    """A certificate of the agency's own key, named as the network's CA names its own, but
    signed by another CA (another network's, say) is not the network's: refused, though the
    revocation list and the CA's certificate are the network's own."""
    pki, other = tmp_path / "pki", tmp_path / "other"
    create_pki(pki, "n", ["civil"], b"pw", now=NOW)
    create_pki(other, "n", ["civil"], b"pw", now=NOW)

    def key(path: Path) -> ec.EllipticCurvePrivateKey:
        got = serialization.load_der_private_key(
            open_secret(path.read_bytes(), b"pw", "tls-key", path), None)
        assert isinstance(got, ec.EllipticCurvePrivateKey)
        return got

    mine = x509.load_pem_x509_certificate((pki / "civil.crt").read_bytes())
    their_ca = x509.load_pem_x509_certificate((other / "ca.crt").read_bytes())
    assert their_ca.subject == mine.issuer  # the same name: only the signature tells them apart
    builder = (x509.CertificateBuilder().subject_name(mine.subject).issuer_name(mine.issuer)
               .public_key(key(pki / "civil.key").public_key()).serial_number(mine.serial_number)
               .not_valid_before(mine.not_valid_before_utc)
               .not_valid_after(mine.not_valid_after_utc))
    for ext in mine.extensions:
        builder = builder.add_extension(ext.value, ext.critical)
    forged = builder.sign(key(other / "ca.key"), hashes.SHA256())
    (pki / "civil.crt").write_bytes(forged.public_bytes(serialization.Encoding.PEM))
    with pytest.raises(PkiError, match=r"civil\.crt is not signed by .*ca\.crt"):
        unlock(pki, "civil", b"pw", now=NOW)


def test_a_certificate_is_refused_from_its_last_second_and_its_days_are_the_earlier_end(
        tmp_path: Path) -> None:
    """At its not-after second an agency's certificate has ended (etcd and peers refuse it
    then); before, the days left are those of the earlier end, the agency's, not the CA's."""
    from node.pki import _load_key, check_certificates

    pki = tmp_path / "pki"
    create_pki(pki, "n", ["civil"], b"pw", now=NOW)
    end = x509.load_pem_x509_certificate((pki / "civil.crt").read_bytes()).not_valid_after_utc
    key = _load_key(pki / "civil.key", b"pw")
    assert check_certificates(pki, "civil", key, now=NOW) == (end - NOW).days == VALID_DAYS
    assert check_certificates(pki, "civil", key, now=end - dt.timedelta(seconds=1)) == 0
    with pytest.raises(PkiError, match=r"civil\.crt expired on"):
        check_certificates(pki, "civil", key, now=end)


def test_reserved_and_overlong_agency_ids_are_refused(tmp_path: Path) -> None:
    """An agency named as the CA's, the list's, the operator's or etcd's root files (or
    folders) would pass for them; an id over 64 characters is no agency id."""
    made = tmp_path / "made"
    create_pki(made, "n", ["a" * 64], b"pw", now=NOW)  # 64: the longest id
    for bad in ("ca", "crl", "operator", "root", "revoked", "superseded", "a" * 65):
        said = "reserved" if len(bad) < 65 else "1 to 64"
        with pytest.raises(PkiError, match=said):
            create_pki(tmp_path / "pki", "n", ["civil", bad], b"pw", now=NOW)
        assert not (tmp_path / "pki").exists()
        with pytest.raises(PkiError, match=said):
            issue_agency_cert(made, bad, b"pw", now=NOW)


def test_a_ca_key_that_is_not_the_ca_certificate_s_issues_nothing(tmp_path: Path) -> None:
    """Nor does a CA from its last second: renew it first."""
    pki, other = tmp_path / "pki", tmp_path / "other"
    create_pki(pki, "n", ["civil"], b"pw", now=NOW)
    end = x509.load_pem_x509_certificate((pki / "ca.crt").read_bytes()).not_valid_after_utc
    with pytest.raises(PkiError, match="the network CA expired on"):
        issue_agency_cert(pki, "edu", b"pw", now=end)
    issue_agency_cert(pki, "edu", b"pw", now=end - dt.timedelta(seconds=1))
    create_pki(other, "n", [], b"pw", now=NOW)
    (pki / "ca.key").write_bytes((other / "ca.key").read_bytes())
    with pytest.raises(PkiError, match=r"ca\.key is not the key of .*ca\.crt"):
        issue_agency_cert(pki, "health", b"pw", now=NOW)
    assert not (pki / "health.crt").exists()


def test_unlock_writes_a_private_runtime_copy_that_lock_removes(tmp_path: Path) -> None:
    create_pki(tmp_path / "pki", "n", ["civil"], b"pw", now=NOW)
    rt = unlock(tmp_path / "pki", "civil", b"pw")
    try:
        assert stat.S_IMODE(rt.stat().st_mode) == 0o700
        assert stat.S_IMODE((rt / "civil.key").stat().st_mode) == 0o600
        assert b"ENCRYPTED" not in (rt / "civil.key").read_bytes()
    finally:
        lock(rt)
    assert not rt.exists()
    # a runtime folder given (a cluster's) is made private too, whatever its mode was
    given = tmp_path / "runtime"
    given.mkdir()
    given.chmod(0o755)
    rt = unlock(tmp_path / "pki", "civil", b"pw", runtime=given)
    try:
        assert rt == given and stat.S_IMODE(rt.stat().st_mode) == 0o700
    finally:
        lock(rt)


def test_a_runtime_whose_owner_died_is_swept_at_the_next_unlock(tmp_path: Path) -> None:
    create_pki(tmp_path / "pki", "n", ["sweep-test"], b"pw", now=NOW)
    # a process that unlocks and dies without lock(), as a SIGKILLed node does
    code = ("import os, sys; from pathlib import Path; from node.pki import unlock; "
            "print(unlock(Path(sys.argv[1]), 'sweep-test', b'pw'), flush=True); os._exit(0)")
    died = subprocess.run([sys.executable, "-c", code, str(tmp_path / "pki")],
                          capture_output=True, text=True, timeout=60, check=True)
    stale = Path(died.stdout.strip())
    assert (stale / "sweep-test.key").exists()  # its clear key outlived it
    base = stale.parent
    alive = unlock(tmp_path / "pki", "sweep-test", b"pw")  # ours: this process is alive
    try:
        assert not stale.exists()  # swept when the next node unlocked
        assert (alive / "sweep-test.key").exists()
        assert sweep_stale_runtimes(base, "sweep-test") == []  # a live owner's folder stays
        assert alive.exists()
        (alive / "owner.pid").unlink()  # being made right now: no owner yet, so left alone
        assert sweep_stale_runtimes(base, "sweep-test") == []
    finally:
        lock(alive)


def _pki(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN / "ledger-node"), "pki", *args], capture_output=True,
                          text=True, env=env or {**os.environ, "LEDGER_KEY_PASSPHRASE": "pw"},
                          timeout=60, check=False)


def test_pki_command(tmp_path: Path) -> None:
    pki = tmp_path / "pki"
    r = _pki("create", "--out", str(pki), "--network", "district-7", "--agency", "civil",
             "--agency", "edu")
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in pki.iterdir()) == [
        "ca.crt", "ca.key", "civil.crt", "civil.key", "crl.pem", "edu.crt", "edu.key",
        "operator.crt", "operator.key"]
    again = _pki("create", "--out", str(pki), "--network", "x", "--agency", "a")
    assert again.returncode == 1
    assert "not empty" in again.stderr
    # an agency admitted later, one revoked, one renewed; `list` says which is which
    assert _pki("add", "--pki", str(pki), "--agency", "health").returncode == 0
    edu = x509.load_pem_x509_certificate((pki / "edu.crt").read_bytes()).serial_number
    r = _pki("revoke", "--pki", str(pki), "--agency", "edu")
    assert r.returncode == 0, r.stderr
    assert f"{edu:040x}" in r.stderr  # as `list` writes it
    assert "copy that file to every agency" in r.stderr
    civil = x509.load_pem_x509_certificate((pki / "civil.crt").read_bytes()).serial_number
    r = _pki("renew", "--pki", str(pki), "--agency", "civil")
    assert r.returncode == 0, r.stderr
    listed = _pki("list", "--pki", str(pki))
    assert listed.returncode == 0, listed.stderr
    rows = {line.split()[1]: line for line in listed.stdout.splitlines()}
    assert f"{edu:040x}" in rows and rows[f"{edu:040x}"].endswith("revoked")
    assert rows[f"{civil:040x}"].endswith("days left (superseded)")  # renewed, still valid
    assert sum("days left" in line for line in rows.values()) == 5  # civil (both), health
    # the CA's and the operator's too: the CA's end is the network's (ADR 54)
    assert [line.split()[0] for line in listed.stdout.splitlines()[:2]] == ["ca", "operator"]
    # refused with one line: an agency revoked already, one with no certificate, a folder
    # without the CA key
    r = _pki("revoke", "--pki", str(pki), "--agency", "edu")
    assert r.returncode == 1 and "it was revoked already" in r.stderr
    r = _pki("revoke", "--pki", str(pki), "--agency", "nobody")
    assert r.returncode == 1 and "is the agency id right?" in r.stderr
    (pki / "ca.key").rename(tmp_path / "ca.key")
    r = _pki("add", "--pki", str(pki), "--agency", "market")
    assert r.returncode == 1 and "holds no CA key" in r.stderr
    assert "Traceback" not in r.stderr


def _serial(path: Path) -> int:
    return x509.load_pem_x509_certificate(path.read_bytes()).serial_number


def test_a_revoked_certificate_is_listed_and_no_longer_unlocks(tmp_path: Path) -> None:
    pki = tmp_path / "pki"
    create_pki(pki, "n", ["civil", "edu"], b"pw", now=NOW)
    ca = x509.load_pem_x509_certificate((pki / "ca.crt").read_bytes())
    crl = x509.load_pem_x509_crl((pki / "crl.pem").read_bytes())
    assert crl.is_signature_valid(ca.public_key()) and len(crl) == 0  # type: ignore[arg-type]
    # edu's own copy of its PKI folder, as the operator handed it out
    edu_copy = tmp_path / "edu-pki"
    edu_copy.mkdir()
    for name in ("ca.crt", "crl.pem", "edu.crt", "edu.key"):
        (edu_copy / name).write_bytes((pki / name).read_bytes())
    lock(unlock(edu_copy, "edu", b"pw", now=NOW))
    serial = _serial(pki / "edu.crt")
    later = NOW + dt.timedelta(days=3)
    revoke_agency_cert(pki, "edu", b"pw", now=later)
    crl = x509.load_pem_x509_crl((pki / "crl.pem").read_bytes())
    entry = crl.get_revoked_certificate_by_serial_number(serial)
    assert entry is not None and entry.revocation_date_utc == later
    assert crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number == 2
    assert not (pki / "edu.crt").exists() and not (pki / "edu.key").exists()
    assert _serial(pki / "revoked" / f"edu-{serial:x}.crt") == serial
    # the new list reaches edu's folder: edu's node and etcd member no longer start
    (edu_copy / "crl.pem").write_bytes((pki / "crl.pem").read_bytes())
    with pytest.raises(PkiError, match="was revoked on"):
        unlock(edu_copy, "edu", b"pw", now=later)
    lock(unlock(pki, "civil", b"pw", now=later))  # the others are untouched
    # certified anew (a new key, a new serial) it unlocks again
    issue_agency_cert(pki, "edu", b"pw", now=later)
    assert _serial(pki / "edu.crt") != serial
    lock(unlock(pki, "edu", b"pw", now=later))
    # a list not signed by the network's CA is refused, not trusted
    other = tmp_path / "other"
    create_pki(other, "n", ["civil"], b"pw", now=NOW)
    (pki / "crl.pem").write_bytes((other / "crl.pem").read_bytes())
    with pytest.raises(PkiError, match="is not signed by"):
        unlock(pki, "civil", b"pw", now=later)
    # nor one the CA's key signed under another issuer's name (not the CA's list)
    ca_key = serialization.load_der_private_key(
        open_secret((pki / "ca.key").read_bytes(), b"pw", "tls-key", pki / "ca.key"), None)
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
    named = (x509.CertificateRevocationListBuilder()
             .issuer_name(x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "another")]))
             .last_update(NOW).next_update(later + dt.timedelta(days=1))
             .sign(ca_key, hashes.SHA256()))
    (pki / "crl.pem").write_bytes(named.public_bytes(serialization.Encoding.PEM))
    with pytest.raises(PkiError, match="is not signed by"):
        unlock(pki, "civil", b"pw", now=later)


def test_renew_gives_a_new_key_and_keeps_the_old_certificate_valid(tmp_path: Path) -> None:
    pki = tmp_path / "pki"
    create_pki(pki, "n", ["civil"], b"pw", now=NOW)
    old_cert, old_key = (pki / "civil.crt").read_bytes(), (pki / "civil.key").read_bytes()
    later = NOW + dt.timedelta(days=800)  # 25 days before the old one expires
    new = renew_agency_cert(pki, "civil", b"pw", now=later)
    assert new.serial_number != x509.load_pem_x509_certificate(old_cert).serial_number
    assert (pki / "civil.key").read_bytes() != old_key
    # its full time: the CA's ten years outlast it (ADR 54)
    assert new.not_valid_after_utc - later == dt.timedelta(days=VALID_DAYS)
    lock(unlock(pki, "civil", b"pw", now=later))
    crl = x509.load_pem_x509_crl((pki / "crl.pem").read_bytes())
    assert len(crl) == 0  # the old one runs out on its own; nothing was revoked
    with pytest.raises(PkiError, match=r"CA expired on .* renew it first .*pki renew-ca"):
        renew_agency_cert(pki, "civil", b"pw", now=NOW + dt.timedelta(days=CA_VALID_DAYS + 1))
    # revoking the agency later revokes the superseded certificate too: it is still valid
    old_serial = x509.load_pem_x509_certificate(old_cert).serial_number
    revoke_agency_cert(pki, "civil", b"pw", now=later)
    crl = x509.load_pem_x509_crl((pki / "crl.pem").read_bytes())
    assert {e.serial_number for e in crl} == {old_serial, new.serial_number}
    assert not list((pki / "superseded").glob("*.crt"))


def test_revoking_an_agency_leaves_one_whose_id_it_begins(tmp_path: Path) -> None:
    """Ids may hold '-': revoking "city" must not revoke "city-water"'s certificates, the
    superseded one its running processes still use included; nor call it revoked already."""
    pki = tmp_path / "pki"
    create_pki(pki, "n", ["city", "city-water"], b"pw", now=NOW)
    water_old = _serial(pki / "city-water.crt")
    renew_agency_cert(pki, "city-water", b"pw", now=NOW)
    revoke_agency_cert(pki, "city", b"pw", now=NOW)
    crl = x509.load_pem_x509_crl((pki / "crl.pem").read_bytes())
    assert crl.get_revoked_certificate_by_serial_number(water_old) is None
    assert (pki / "superseded" / f"city-water-{water_old:x}.crt").exists()
    with pytest.raises(PkiError, match="is the agency id right"):
        revoke_agency_cert(pki, "city-w", b"pw", now=NOW)
    with pytest.raises(PkiError, match="revoked: issue a new one"):
        renew_agency_cert(pki, "city", b"pw", now=NOW)
    # a revoked certificate still in its place (a revocation stopped before it moved it, a
    # list copied from the CA's other copy) is not renewed either: the list says it all
    [revoked] = (pki / "revoked").glob("city-*.crt")
    shutil.copyfile(revoked, pki / "city.crt")
    with pytest.raises(PkiError, match="revoked: issue a new one"):
        renew_agency_cert(pki, "city", b"pw", now=NOW)
    assert _serial(pki / "city.crt") == _serial(revoked)


def test_a_pki_from_before_gets_an_empty_revocation_list(tmp_path: Path) -> None:
    pki = tmp_path / "pki"
    create_pki(pki, "n", ["civil"], b"pw", now=NOW)
    (pki / "crl.pem").unlink()
    lock(unlock(pki, "civil", b"pw", now=NOW))  # no list: nothing is revoked
    ensure_crl(pki, b"pw", now=NOW)
    assert len(x509.load_pem_x509_crl((pki / "crl.pem").read_bytes())) == 0
    (pki / "crl.pem").unlink()
    with pytest.raises(PkiError, match="wrong passphrase"):
        ensure_crl(pki, b"nope", now=NOW)
    assert not (pki / "crl.pem").exists()  # nothing half-made
    # nor an operator certificate: `pki add` (run where the CA is) makes one
    for name in ("operator.crt", "operator.key"):
        (pki / name).unlink()
    with pytest.raises(PkiError, match="gets one from `ledger-node pki add`"):
        operator_credentials(pki, b"pw")
    r = _pki("add", "--pki", str(pki), "--agency", "edu")
    assert r.returncode == 0, r.stderr
    assert operator_credentials(pki, b"pw")[1].startswith(b"-----BEGIN CERTIFICATE")


def _tls_server(folder: Path, agency: str) -> tuple[int, threading.Thread, socket.socket]:
    """A real TLS server on 127.0.0.1 with ``agency``'s certificate; accepts one connection
    at a time, sends b"ok" and closes."""
    rt = unlock(folder, agency, b"pw", now=dt.datetime.now(dt.UTC))
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(str(rt / f"{agency}.crt"), str(rt / f"{agency}.key"))
    lock(rt)
    sock = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        while True:
            try:
                conn, _ = sock.accept()
            except OSError:
                return
            with contextlib.suppress(OSError, ssl.SSLError), ctx.wrap_socket(
                    conn, server_side=True) as tls:
                tls.sendall(b"ok")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return sock.getsockname()[1], thread, sock


def test_a_node_refuses_a_peer_whose_certificate_is_revoked(tmp_path: Path) -> None:
    """Catch-up and co-signatures reach peers through :meth:`TlsFiles.peer_context`: with the
    CA's list, a revoked agency's node is no peer (a real TLS handshake)."""
    pki = tmp_path / "pki"
    create_pki(pki, "n", ["civil", "edu"], b"pw", now=dt.datetime.now(dt.UTC))
    port, _, sock = _tls_server(pki, "edu")
    try:
        def hello(tls: TlsFiles) -> bytes:
            with socket.create_connection(("127.0.0.1", port), timeout=10) as raw, \
                    tls.peer_context().wrap_socket(raw, server_hostname="127.0.0.1") as c:
                return c.recv(2)

        files = TlsFiles(str(pki / "ca.crt"), "", "", str(pki / "crl.pem"))
        assert hello(files) == b"ok"
        revoke_agency_cert(pki, "edu", b"pw", now=dt.datetime.now(dt.UTC))
        with pytest.raises(ssl.SSLCertVerificationError, match="revoked"):
            hello(files)
        assert hello(TlsFiles(str(pki / "ca.crt"), "", "")) == b"ok"  # without the list
    finally:
        sock.close()


def _https_node(pki: Path, agency: str) -> tuple[http.server.ThreadingHTTPServer, list[str]]:
    """A real HTTPS server on 127.0.0.1 with ``agency``'s certificate, answering every GET
    "ok" on a kept-alive connection (a refused handshake said nothing), served until
    ``shutdown()``; and the paths asked of it."""
    rt = unlock(pki, agency, b"pw", now=dt.datetime.now(dt.UTC))
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(str(rt / f"{agency}.crt"), str(rt / f"{agency}.key"))
    lock(rt)
    asked: list[str] = []

    class Hello(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive: the old client's connection stays open

        def do_GET(self) -> None:
            asked.append(self.path)
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args: object) -> None:
            pass

    class Server(http.server.ThreadingHTTPServer):
        daemon_threads = True

        def get_request(self) -> tuple[socket.socket, object]:
            conn, addr = super().get_request()
            return ctx.wrap_socket(conn, server_side=True), addr

        def handle_error(self, request: object, client_address: object) -> None:
            pass  # a refused handshake

    server = Server(("127.0.0.1", 0), Hello)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, asked


def test_a_running_node_refuses_a_peer_revoked_after_it_started(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """The catch-up client (:class:`PeerHttp`) notices a new revocation list on disk: the peer
    revoked after the node started is refused at its next connection, with no restart. A list
    damaged on disk keeps the one read before (a real HTTPS server and handshakes)."""
    pki = tmp_path / "pki"
    create_pki(pki, "n", ["civil", "edu"], b"pw", now=dt.datetime.now(dt.UTC))
    server, _ = _https_node(pki, "edu")
    url = f"https://127.0.0.1:{server.server_address[1]}/v1/head"
    # as `ledger-node run` makes it: civil's unlocked files, and the PKI folder's list (the
    # one the operator replaces; unlock's copy of it never changes)
    civil = unlock(pki, "civil", b"pw", now=dt.datetime.now(dt.UTC))
    peers = PeerHttp(peer_tls(pki, civil, "civil"))
    try:
        assert peers.client().get(url).text == "ok"
        crl = (pki / "crl.pem").read_bytes()
        (pki / "crl.pem").write_bytes(b"-----BEGIN X509 CRL-----\ngarbage\n")  # half copied
        with caplog.at_level("WARNING", logger="node.replication"):
            assert peers.client().get(url).text == "ok"
        assert "does not load" in caplog.text
        (pki / "crl.pem").write_bytes(crl)
        revoke_agency_cert(pki, "edu", b"pw", now=dt.datetime.now(dt.UTC))
        with pytest.raises(httpx.ConnectError, match="revoked"):
            peers.client().get(url)
    finally:
        peers.close()
        lock(civil)
        server.shutdown()
        server.server_close()


_PROXY_VARIABLES = ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy", "HTTP_PROXY",
                    "http_proxy", "grpc_proxy")


@contextlib.contextmanager
def _proxy_in_environment(monkeypatch: pytest.MonkeyPatch) -> Any:
    """A listener on 127.0.0.1 that records each connection made to it and closes it (a proxy
    that forwards nothing), named by every proxy variable of the environment (none of them
    excluding 127.0.0.1); it yields the list of connections seen."""
    listener = socket.create_server(("127.0.0.1", 0))
    seen: list[tuple[str, int]] = []

    def accept() -> None:
        while True:
            try:
                conn, addr = listener.accept()
            except OSError:
                return  # closed
            seen.append(addr)
            conn.close()

    threading.Thread(target=accept, daemon=True).start()
    proxy = f"http://127.0.0.1:{listener.getsockname()[1]}"
    for name in ("NO_PROXY", "no_proxy", "no_grpc_proxy"):
        monkeypatch.delenv(name, raising=False)
    for name in _PROXY_VARIABLES:
        monkeypatch.setenv(name, proxy)
    try:
        yield seen
    finally:
        listener.close()


def test_an_etcd_member_is_handed_no_passphrase_and_no_proxy_variable_in_any_case(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """What ``_etcd_env`` hands an etcd member (``ledger-node cluster``, ``etcd run``): every
    variable of ours but the key passphrase (and the file naming it) and each proxy variable
    in any case (etcd reads ``HTTPS_PROXY`` and ``https_proxy``; ``no_proxy`` with them). The
    cluster test names four proxies in one case each; mutants keeping ``NO_PROXY``, a mixed
    case, the ``_FILE`` variable, or handing etcd nothing at all lived (round 44M)."""
    from node.cluster import _etcd_env

    dropped = ["LEDGER_KEY_PASSPHRASE", "LEDGER_KEY_PASSPHRASE_FILE", "HTTPS_PROXY",
               "https_proxy", "Https_Proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy",
               "NO_PROXY", "no_proxy", "No_Proxy", "GRPC_PROXY", "grpc_proxy"]
    kept = {"LEDGER_KEEP_ME": "1", "PROXY": "not a proxy variable", "HTTPS_PROXY_NOTE": "x",
            "PATH": os.environ.get("PATH", "/usr/bin")}
    for name in dropped:
        monkeypatch.setenv(name, "http://127.0.0.1:9")
    for name, value in kept.items():
        monkeypatch.setenv(name, value)
    env = _etcd_env()
    assert not set(dropped) & set(env), sorted(set(dropped) & set(env))
    assert {k: env.get(k) for k in kept} == kept
    assert {k: v for k, v in env.items() if k not in dropped} == {
        k: v for k, v in os.environ.items() if k not in dropped}


def test_a_node_reaches_its_peers_directly_whatever_proxy_the_environment_names(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A node's catch-up client (:class:`PeerHttp`) followed the environment's proxies, as
    httpx does by default: started with ``HTTPS_PROXY`` (or ``ALL_PROXY``...), its mTLS traffic
    to a peer, 127.0.0.1 too, went to that proxy (here one that forwards nothing: the fetch
    failed). A node talks only to the addresses governance and its config name: it reaches
    the peer, and the proxy sees no connection."""
    pki = tmp_path / "pki"
    create_pki(pki, "n", ["civil", "edu"], b"pw", now=dt.datetime.now(dt.UTC))
    server, asked = _https_node(pki, "edu")
    url = f"https://127.0.0.1:{server.server_address[1]}/v1/head"
    civil = unlock(pki, "civil", b"pw", now=dt.datetime.now(dt.UTC))
    try:
        with _proxy_in_environment(monkeypatch) as seen:
            peers = PeerHttp(peer_tls(pki, civil, "civil"))
            try:
                assert peers.client().get(url).text == "ok"
            finally:
                peers.close()
            assert asked == ["/v1/head"]
            assert seen == []
    finally:
        lock(civil)
        server.shutdown()
        server.server_close()


def test_a_node_reaches_etcd_directly_whatever_proxy_the_environment_names(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The node's etcd client (gRPC, mTLS) and the local cluster's etcd health probe (HTTPS)
    with every proxy variable set, ``grpc_proxy`` too: both reach the real etcd member on
    127.0.0.1, and the proxy sees no connection."""
    from node.etcdlog import EtcdLog

    base = free_base(1)
    create_cluster(tmp_path / "c", 1, b"pw", base_port=base, network=f"proxy-{base}")
    net = LocalCluster(tmp_path / "c", b"pw")
    held: Path | None = None
    try:
        m = net.members[0]
        with _proxy_in_environment(monkeypatch) as seen:
            net._start_etcd(m)
            net._wait_etcd(m, 60)  # (its health probe: through no proxy)
            assert net._etcd_healthy(m)
            held = unlock(tmp_path / "c" / "pki", m.agency, b"pw")
            files = TlsFiles(str(held / "ca.crt"), str(held / f"{m.agency}.crt"),
                             str(held / f"{m.agency}.key"))
            etcd = EtcdLog([m.client_url], net.network, tls=files, timeout=10)
            try:
                etcd.put_cosig(1, m.agency, b"direct")
                assert [r.value for r in etcd.read_after(0, 0)[2]] == [b"direct"]
            finally:
                etcd.close()
            assert seen == []
    finally:
        if held is not None:
            lock(held)
        net.stop()


def test_etcd_shuts_a_revoked_certificate_out_at_its_next_connection(tmp_path: Path) -> None:
    """A real etcd member started by the local cluster reads ``crl.pem`` on every new
    connection: revoking a certificate needs no restart."""
    base = free_base(2)
    create_cluster(tmp_path / "c", 2, b"pw", base_port=base, network=f"crl-{base}")
    net = LocalCluster(tmp_path / "c", b"pw")
    try:
        for m in net.members:
            net._start_etcd(m)
        for m in net.members:
            net._wait_etcd(m, 60)
        civil = net.members[0]
        # edu's clear key as its running processes hold it
        held = unlock(tmp_path / "c" / "pki", "edu", b"pw")
        ctx = ssl.create_default_context(cafile=str(held / "ca.crt"))
        ctx.load_cert_chain(str(held / "edu.crt"), str(held / "edu.key"))

        def edu_reaches_civil() -> bool:
            try:
                return httpx.get(f"{civil.client_url}/health", verify=ctx,
                                 timeout=5).status_code == 200
            except httpx.HTTPError:
                return False

        assert edu_reaches_civil()
        revoke_agency_cert(tmp_path / "c" / "pki", "edu", b"pw", now=dt.datetime.now(dt.UTC))
        assert not edu_reaches_civil()
        assert net._etcd_healthy(civil)  # civil's own certificate still works
        lock(held)
    finally:
        net.stop()


def _runtime_folders(cluster: Path) -> set[Path]:
    """Runtime folders of `node.pki.unlock` (each holds a clear TLS key while its user runs)
    of the cluster in ``cluster`` (their CA certificate is its own) whose owner has ended.
    Those of other clusters (another test process's, whose nodes a test may have killed) are
    theirs to remove."""
    shm = Path("/dev/shm")  # where unlock puts them
    ca = (cluster / "pki" / "ca.crt").read_bytes()
    left = set()
    for folder in shm.glob("credledger-*") if shm.is_dir() else []:
        try:
            pid = int((folder / "owner.pid").read_text())
            if (folder / "ca.crt").read_bytes() != ca:
                continue
        except (OSError, ValueError):
            continue  # being made or removed right now
        if not Path(f"/proc/{pid}").exists():
            left.add(folder)
    return left


def test_cluster_command_starts_and_stops_a_network(tmp_path: Path) -> None:
    # the passphrase from a file (ADR 47): the nodes are handed the file, not the secret
    secret = tmp_path / "passphrase"
    secret.write_text("pw\n")
    secret.chmod(0o600)
    env = {k: v for k, v in os.environ.items() if k != "LEDGER_KEY_PASSPHRASE"}
    env["LEDGER_KEY_PASSPHRASE_FILE"] = str(secret)
    r = subprocess.run([str(BIN / "ledger-node"), "cluster", "--agencies", "3", "--data",
                        str(tmp_path / "c"), "--base-port", str(free_base(3)), "--once"],
                       capture_output=True, text=True, env=env, timeout=180, check=False)
    assert r.returncode == 0, r.stderr
    for agency in ("civil", "edu", "health"):
        assert f"{agency}" in r.stderr and "height 0" in r.stderr
    assert "stopped" in r.stderr
    leftovers = subprocess.run(["pgrep", "-f", str(tmp_path / "c")], capture_output=True,
                               check=False)
    assert leftovers.stdout == b""  # every etcd member and node process is gone
    # and every clear TLS key with them: the nodes (stopped with SIGTERM) and the etcd members
    assert _runtime_folders(tmp_path / "c") == set()


def _node_pid(folder: Path, agency: str) -> int:
    found = subprocess.run(["pgrep", "-f", f"{folder / agency / 'node.toml'}"],
                           capture_output=True, text=True, check=False).stdout.split()
    assert len(found) == 1, found
    return int(found[0])


def test_cluster_command_reports_processes_that_die_and_ends_with_the_last_node(
        tmp_path: Path) -> None:
    import queue
    import signal
    import threading
    import time

    folder = tmp_path / "c"
    # proxies named in the environment (a port nothing listens on): the cluster runs all the
    # same, and its etcd members are not handed them (ADR 84; etcd's peer traffic follows them)
    proxies = {"HTTPS_PROXY": "http://127.0.0.1:9", "http_proxy": "http://127.0.0.1:9",
               "ALL_PROXY": "http://127.0.0.1:9", "grpc_proxy": "http://127.0.0.1:9"}
    env = {**os.environ, "LEDGER_KEY_PASSPHRASE": "pw", **proxies}
    proc = subprocess.Popen([str(BIN / "ledger-node"), "cluster", "--agencies", "2", "--data",
                             str(folder), "--base-port", str(free_base(2))],
                            stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True,
                            env=env)
    assert proc.stderr is not None
    lines: queue.Queue[str] = queue.Queue()
    reader = threading.Thread(target=lambda: [lines.put(x) for x in proc.stderr], daemon=True)
    reader.start()
    said: list[str] = []

    def wait_for(text: str) -> None:
        deadline = time.monotonic() + 120
        while not any(text in line for line in said):
            assert time.monotonic() < deadline, f"no {text!r} in {said}"
            try:
                said.append(lines.get(timeout=1))
            except queue.Empty:
                assert proc.poll() is None or not lines.empty(), f"exited early: {said}"

    try:
        wait_for("running; Ctrl-C stops every process")
        # etcd is not given the passphrase, and a node drops it once read, so the signature
        # workers it spawns have none either (ADR 46).
        etcd = subprocess.run(["pgrep", "-f", f"etcd --name edu --data-dir {folder}"],
                              capture_output=True, text=True, check=False).stdout.split()
        workers = subprocess.run(["pgrep", "-P", str(_node_pid(folder, "edu"))],
                                 capture_output=True, text=True, check=False).stdout.split()
        assert len(etcd) == 1, etcd
        for pid in etcd + workers:
            environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
            assert not any(v.startswith(b"LEDGER_KEY_PASSPHRASE=") for v in environ), pid
        environ = Path(f"/proc/{etcd[0]}/environ").read_bytes().split(b"\0")
        assert not any(v.split(b"=")[0].decode() in proxies for v in environ), environ
        os.kill(_node_pid(folder, "edu"), signal.SIGKILL)
        wait_for("edu's node stopped (killed by signal 9); the others keep running")
        assert proc.poll() is None  # civil's node and both etcd members still run
        os.kill(_node_pid(folder, "civil"), signal.SIGKILL)
        wait_for("no node is running any more; stopping the cluster")
        assert proc.wait(timeout=60) == 1
        reader.join(timeout=10)
        said.extend(lines.queue)
        assert said[-1].strip() == "stopped"
    finally:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(timeout=60)
        reader.join(timeout=10)
        proc.stderr.close()
    leftovers = subprocess.run(["pgrep", "-f", str(folder)], capture_output=True, check=False)
    assert leftovers.stdout == b""  # the etcd members were stopped too
    # the SIGKILLed nodes' clear TLS keys were swept when the cluster stopped
    assert _runtime_folders(folder) == set()


def test_a_failed_start_leaves_no_process_behind(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    import socket

    from node import cluster as cluster_module
    from node.cluster import ClusterError, LocalCluster, create_cluster

    # a port taken after the start looked (the start refuses one taken before: test_ops)
    monkeypatch.setattr(cluster_module, "_listened_on", lambda port: False)

    base = free_base(3)
    folder = tmp_path / "c"
    create_cluster(folder, 3, b"pw", base_port=base, network="start-fails")
    cluster = LocalCluster(folder, b"pw")
    with socket.socket() as taken:  # edu's node port is busy: that node cannot come up
        taken.bind(("127.0.0.1", int(cluster.member("edu").url.rsplit(":", 1)[1])))
        taken.listen()
        # The node exits at once, and the start says so with the end of its log (it waited
        # for the timeout and said "not up"). On a slow machine an etcd member may be the one
        # reported, by the timeout: the cleanup is the same.
        with pytest.raises(ClusterError, match=r"(?s)node edu exited with status .*address "
                                               r"already in use|not up within"):
            cluster.start(timeout=10)
    leftovers = subprocess.run(["pgrep", "-f", str(folder)], capture_output=True, check=False)
    assert leftovers.stdout == b""  # the etcd members and the other nodes were stopped


def test_the_operator_administers_etcd_from_the_command_line(tmp_path: Path) -> None:
    """`ledger-node etcd secure|members|take-out|rejoin` on real etcd members: with auth on,
    an agency's certificate reaches only the network's keys; taken out, not even those."""
    import grpc
    from aetcd.rpc import rpc_pb2 as pb
    from aetcd.rpc import rpc_pb2_grpc as pbg

    from node.etcdadmin import EtcdAdmin

    base = free_base(2)
    network = f"ops-{base}"
    create_cluster(tmp_path / "c", 2, b"pw", base_port=base, network=network)
    net = LocalCluster(tmp_path / "c", b"pw")
    pki = tmp_path / "c" / "pki"
    held = None
    try:
        for m in net.members:
            net._start_etcd(m)
        for m in net.members:
            net._wait_etcd(m, 60)
        civil = net.members[0].client_url

        def etcd(*args: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run([str(BIN / "ledger-node"), "etcd", *args, "--pki", str(pki),
                                   "--endpoint", civil], capture_output=True, text=True,
                                  env={**os.environ, "LEDGER_KEY_PASSPHRASE": "pw"},
                                  timeout=120, check=False)

        r = etcd("secure", "--network", network, "--agency", "civil", "--agency", "edu")
        assert r.returncode == 0, r.stderr
        # again, as after a first try cut short: what exists is kept, nothing fails
        r = etcd("secure", "--network", network, "--agency", "civil", "--agency", "edu")
        assert r.returncode == 0, r.stderr
        held = unlock(pki, "edu", b"pw")
        inside = f"/credledger/{network}/probe".encode()
        with etcd_as(held, "edu", civil) as channel:
            kv = pbg.KVStub(channel)
            kv.Put(pb.PutRequest(key=inside, value=b"1"), timeout=5)
            with pytest.raises(grpc.RpcError) as outside:
                kv.Put(pb.PutRequest(key=b"/other", value=b"1"), timeout=5)
            assert outside.value.code() == grpc.StatusCode.PERMISSION_DENIED
            listed = etcd("members")
            assert listed.returncode == 0, listed.stderr
            assert sorted(line.split()[0] for line in listed.stdout.splitlines()) == [
                "civil", "edu"]
            assert sum("leader" in line for line in listed.stdout.splitlines()) == 1
            # admitting an agency admitted already (run twice, or for one running) never
            # shuts it out, not even between two of the operator's calls: were one of them
            # cut short there, it would stay out
            refused: list[str] = []

            class Watched(EtcdAdmin):
                def call(self, service: str, method: str, request: Any) -> Any:
                    got = super().call(service, method, request)
                    try:
                        kv.Put(pb.PutRequest(key=inside, value=b"3"), timeout=5)
                    except grpc.RpcError as e:
                        refused.append(f"after {method}: {e.code()}")
                    return got

            Watched(civil, operator_credentials(pki, b"pw")).admit("edu")
            assert refused == []
            # a member added and not started yet counts for the quorum: listed, with its
            # peer URL (it has no name until it starts; it was a nameless line)
            admin = EtcdAdmin(civil, operator_credentials(pki, b"pw"))
            spare = f"https://127.0.0.1:{free_base(1)}"
            added = admin.add_member(spare, wait=30.0)
            listed = etcd("members")
            admin.remove_member(added)
            assert listed.returncode == 0, listed.stderr
            assert f"(not started)        {added:016x}  {spare}" in listed.stdout.splitlines()
            # edu's member leads as the take-out begins: `etcd members` right after it failed
            # once ("knows no leader") while civil's elected itself; it waits for the election
            ids = admin.members()
            lead = admin.leader()
            if lead != "edu":
                EtcdAdmin(net.member(lead).client_url, operator_credentials(pki, b"pw")).call(
                    "Maintenance", "MoveLeader", pb.MoveLeaderRequest(targetID=ids["edu"]))
            assert admin.leader() == "edu"
            # taken out once its certificate is revoked (refused before: helper round 31G)
            revoke_agency_cert(pki, "edu", b"pw", now=dt.datetime.now(dt.UTC))
            r = etcd("take-out", "--agency", "edu")
            assert r.returncode == 0, r.stderr
            assert admin.leader() == "civil"
            # on the connection it holds; while the member left behind elects itself leader
            # (edu's may have led) a request times out rather than being answered
            deadline = time.monotonic() + 30
            while True:
                with pytest.raises(grpc.RpcError) as gone:
                    kv.Put(pb.PutRequest(key=inside, value=b"2"), timeout=5)
                if gone.value.code() not in (grpc.StatusCode.DEADLINE_EXCEEDED,
                                             grpc.StatusCode.UNAVAILABLE) \
                        or time.monotonic() > deadline:
                    break
            assert gone.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert [line.split()[0] for line in etcd("members").stdout.splitlines()] == ["civil"]
        # a misspelt name (or one taken out before) is refused, not said to be out of etcd
        for name in ("edu", "civl"):
            r = etcd("take-out", "--agency", name)
            assert r.returncode == 1, r.stderr
            said = " ".join(r.stderr.split())
            assert f"etcd has no user and no member '{name}'" in said, said
            assert "is out of etcd" not in said
        assert [line.split()[0] for line in etcd("members").stdout.splitlines()] == ["civil"]
        # admitting an agency the PKI has no certificate of (a misspelt name), or only a
        # revoked one, is refused before etcd is changed: its member could not connect
        users = EtcdAdmin(civil, operator_credentials(pki, b"pw")).call(
            "Auth", "UserList", pb.AuthUserListRequest()).users
        for name, said in (("civl", "no certificate of 'civl'"),
                           ("edu", "edu's certificate revoked only")):
            r = etcd("admit", "--agency", name)
            assert r.returncode == 1 and said in " ".join(r.stderr.split()), r.stderr
        assert EtcdAdmin(civil, operator_credentials(pki, b"pw")).call(
            "Auth", "UserList", pb.AuthUserListRequest()).users == users
        # `rejoin` (ADR 55; a real one: tests/test_cluster.py) adds no member for an agency
        # etcd does not count (taken out, a misspelt name: it would raise the quorum for a
        # member that never starts), and removes no other agency's member named by its URL
        bad_url = etcd("rejoin", "--agency", "edu", "--peer-url", "http://127.0.0.1:1")
        assert bad_url.returncode == 2 and "https://host:port" in bad_url.stderr
        r = etcd("rejoin", "--agency", "edu", "--peer-url", net.members[1].peer_url)
        assert r.returncode == 1 and "etcd counts no member of 'edu'" in r.stderr, r.stderr
        r = etcd("rejoin", "--agency", "edu", "--peer-url", net.members[0].peer_url)
        assert r.returncode == 1 and "of civil's member, not edu's" in " ".join(
            r.stderr.split()), r.stderr
        # half done (etcd removes no last member, nor one leaving too few started): said,
        # with what was done and how to finish
        revoke_agency_cert(pki, "civil", b"pw", now=dt.datetime.now(dt.UTC))
        r = etcd("take-out", "--agency", "civil")
        said = " ".join(r.stderr.split())
        assert r.returncode == 1 and "civil's etcd user is deleted (it reaches no key), but " \
            "its member is still in the Raft cluster" in said and "Run the same again" in said
        assert [line.split()[0] for line in etcd("members").stdout.splitlines()] == ["civil"]
        bad = subprocess.run([str(BIN / "ledger-node"), "etcd", "members", "--pki", str(pki),
                              "--endpoint", "http://127.0.0.1:1"], capture_output=True,
                             text=True, env={**os.environ, "LEDGER_KEY_PASSPHRASE": "pw"},
                             timeout=60, check=False)
        assert bad.returncode == 2 and "https://host:port" in bad.stderr  # bad input
    finally:
        if held is not None:
            lock(held)
        net.stop()



# -- the CA's end, hosts, usages and health (a hunt, ADR 54) ----------------------------------

def _cert(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def test_the_ca_outlives_agency_certificates_and_renews_with_its_own_key(
        tmp_path: Path) -> None:
    """All certificates ended together with the CA's 825 days, and `renew` could not move
    that: the CA is made for ten years now, and `renew_ca` gives the same CA a later end."""
    pki = tmp_path / "pki"
    create_pki(pki, "n", ["civil", "edu"], b"pw", now=NOW)
    ca = _cert(pki / "ca.crt")
    assert ca.not_valid_after_utc - NOW == dt.timedelta(days=CA_VALID_DAYS)
    assert _cert(pki / "civil.crt").not_valid_after_utc - NOW == dt.timedelta(days=VALID_DAYS)
    # near the CA's end a renewed certificate is cut short at it...
    late = ca.not_valid_after_utc - dt.timedelta(days=100)
    short = renew_agency_cert(pki, "civil", b"pw", now=late)
    assert short.not_valid_after_utc == ca.not_valid_after_utc
    # ...until the CA is renewed: same name and key, so what it signed before still verifies
    new_ca = renew_ca(pki, b"pw", now=late)
    assert new_ca.subject == ca.subject and new_ca.serial_number != ca.serial_number
    assert new_ca.public_key().public_numbers() == ca.public_key().public_numbers()
    assert new_ca.not_valid_after_utc - late == dt.timedelta(days=CA_VALID_DAYS)
    for agency in ("civil", "edu"):
        _cert(pki / f"{agency}.crt").verify_directly_issued_by(new_ca)
        _cert(pki / f"{agency}.crt").verify_directly_issued_by(ca)
    assert [p.name for p in (pki / "superseded").glob("ca.*.crt")] == [
        f"ca.{ca.serial_number:x}.crt"]
    full = renew_agency_cert(pki, "civil", b"pw", now=late)
    assert full.not_valid_after_utc - late == dt.timedelta(days=VALID_DAYS)
    full.verify_directly_issued_by(ca)  # an agency still on the old ca.crt takes it too
    lock(unlock(pki, "civil", b"pw", now=late))
    # the revocation list keeps its entries and runs to the new end (OpenSSL refuses one
    # past its next update), as does the operator's certificate
    revoke_agency_cert(pki, "civil", b"pw", now=late)
    crl = x509.load_pem_x509_crl((pki / "crl.pem").read_bytes())
    assert crl.next_update_utc == new_ca.not_valid_after_utc and len(crl) == 2
    renew_ca(pki, b"pw", now=late + dt.timedelta(days=1))
    crl = x509.load_pem_x509_crl((pki / "crl.pem").read_bytes())
    new_end = _cert(pki / "ca.crt").not_valid_after_utc
    assert crl.next_update_utc == new_end and len(crl) == 2
    assert _cert(pki / "operator.crt").not_valid_after_utc == new_end
    assert sum(c.revoked for c in list_certificates(pki) if c.agency == "civil") == 2
    # after its end too (the key is what counts), and without the CA key nothing is written
    renew_ca(pki, b"pw", now=late + dt.timedelta(days=CA_VALID_DAYS + 1))
    before = (pki / "ca.crt").read_bytes()
    with pytest.raises(PkiError, match="wrong passphrase"):
        renew_ca(pki, b"nope", now=late)
    assert (pki / "ca.crt").read_bytes() == before
    # the old CA certificates kept in superseded/ hide no agency whose id starts with "ca-"
    issue_agency_cert(pki, "ca-north", b"pw", now=late)
    assert "ca-north" in {c.agency for c in list_certificates(pki)}
    assert [c.agency for c in list_certificates(pki)].count("ca") == 1


def test_certificates_name_the_hosts_agencies_are_reached_at(tmp_path: Path) -> None:
    """On several machines peers and etcd check the host they connect to: certificates named
    only 127.0.0.1, localhost and the agency id."""
    pki = tmp_path / "pki"
    create_pki(pki, "n", ["civil", "edu"], b"pw", now=NOW,
               hosts={"civil": ["ledger.civil.example", "10.0.0.7"]})

    def names(agency: str) -> set[str]:
        san = _cert(pki / f"{agency}.crt").extensions.get_extension_for_class(
            x509.SubjectAlternativeName).value
        return {str(n.value) for n in san}

    assert names("civil") == {"127.0.0.1", "localhost", "civil", "ledger.civil.example",
                              "10.0.0.7"}
    assert names("edu") == {"127.0.0.1", "localhost", "edu"}
    issue_agency_cert(pki, "health", b"pw", now=NOW, hosts=["health.example"])
    assert "health.example" in names("health")
    # a renewal keeps the hosts and adds new ones
    renew_agency_cert(pki, "civil", b"pw", now=NOW, hosts=["ledger2.civil.example"])
    assert names("civil") >= {"ledger.civil.example", "10.0.0.7", "ledger2.civil.example"}
    # a bad host is refused before anything is written
    renewed = _cert(pki / "civil.crt").extensions.get_extension_for_class(
        x509.SubjectAlternativeName).value
    assert len(list(renewed)) == len(set(renewed)) == 6  # kept, not named twice
    for bad in ("Bad_Host", "a..b", "-x.example", "x" * 300, "Ledger.Civil.example"):
        with pytest.raises(PkiError, match="neither an IP address nor a host name"):
            create_pki(tmp_path / f"p{len(bad)}", "n", ["civil"], b"pw", now=NOW,
                       hosts={"civil": [bad]})
        assert not (tmp_path / f"p{len(bad)}").exists()
    with pytest.raises(PkiError, match="not an agency listed"):
        create_pki(tmp_path / "q", "n", ["civil"], b"pw", now=NOW, hosts={"cvil": ["x.ex"]})
    # the command line takes AGENCY=HOST
    r = _pki("create", "--out", str(tmp_path / "cli"), "--network", "n", "--agency", "civil",
             "--host", "civil=node.civil.example")
    assert r.returncode == 0, r.stderr
    assert "node.civil.example" in _cert(tmp_path / "cli" / "civil.crt").extensions \
        .get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(
            x509.DNSName)
    r = _pki("create", "--out", str(tmp_path / "cli2"), "--network", "n", "--agency", "civil",
             "--host", "node.civil.example")
    assert r.returncode == 2 and "AGENCY=HOST" in r.stderr


def test_check_hosts_compares_names_without_case_and_addresses_exactly(tmp_path: Path) -> None:
    """As a TLS client does: a host name in capitals (or with its root dot) is the name the
    certificate has; an address is only one of the certificate's addresses."""
    from node.pki import check_hosts

    pki = tmp_path / "pki"
    create_pki(pki, "n", ["civil"], b"pw", now=NOW, hosts={"civil": ["10.0.0.7"]})
    check_hosts(pki, "civil", {"public_url": "LocalHost.", "peer": "10.0.0.7"})
    with pytest.raises(PkiError, match=r"does not name 10\.0\.0\.8 \(peer\)"):
        check_hosts(pki, "civil", {"public_url": "localhost", "peer": "10.0.0.8"})


def test_a_node_refuses_to_start_where_its_certificate_does_not_name_its_hosts(
        tmp_path: Path) -> None:
    """A certificate's hosts were not checked at start: a node whose public_url (served with
    its certificate) or own etcd member (the first endpoint, run with the same certificate)
    is at a host the certificate does not name started, and every connection there failed
    its handshake with errors that named no certificate. It now refuses to start, naming the
    setting, the host and `ledger-node pki renew --agency … --host …`."""
    from node.config import Settings
    from node.pki import check_hosts

    pki = tmp_path / "pki"
    create_pki(pki, "n", ["civil"], b"pw", now=NOW,
               hosts={"civil": ["ledger.civil.example", "10.0.0.7"]})
    check_hosts(pki, "civil", {"a": "127.0.0.1", "b": "localhost", "c": "civil",
                               "d": "Ledger.Civil.Example", "e": "10.0.0.7"})
    with pytest.raises(PkiError) as refused:
        check_hosts(pki, "civil", {"public_url": "node.civil.example", "x": "10.0.0.7",
                                   "etcd": "10.0.0.8"})
    said = " ".join(str(refused.value).split())
    assert "does not name node.civil.example (public_url); 10.0.0.8 (etcd)" in said, said
    assert "ledger-node pki renew --agency civil --host node.civil.example --host 10.0.0.8" \
        in said, said
    assert "ledger.civil.example" in said  # what it does name

    def settings(**given: object) -> Settings:
        return Settings.from_mapping({"data": "d", "agency": "civil", "pki": "pki", **given},
                                     {}, base=tmp_path)

    assert settings(tls=True, public_url="https://node.example:8443",
                    ordering="etcd", etcd_endpoints=["https://[::1]:2379", "https://x:1"]
                    ).tls_hosts() == {"public_url": "node.example",
                                      "etcd_endpoints[0], this agency's own etcd member": "::1"}
    # a node behind a proxy that terminates TLS, and plain etcd: no host to check
    assert settings(public_url="https://node.example", ordering="etcd",
                    etcd_endpoints=["http://10.0.0.9:2379"]).tls_hosts() == {}

    # `ledger-node run`: refused before it opens anything (here there is no store to open)
    live = tmp_path / "live"
    create_pki(live, "n", ["civil"], b"pw", now=dt.datetime.now(dt.UTC),
               hosts={"civil": ["ledger.civil.example"]})
    env = {**os.environ, "LEDGER_KEY_PASSPHRASE": "pw"}

    def run(public_url: str, endpoint: str) -> subprocess.CompletedProcess[str]:
        (tmp_path / "node.toml").write_text(
            f'data = "data"\nagency = "civil"\npki = "live"\ntls = true\n'
            f'public_url = "{public_url}"\nordering = "etcd"\n'
            f'etcd_endpoints = ["{endpoint}"]\n')
        return subprocess.run([str(BIN / "ledger-node"), "run", "--config",
                               str(tmp_path / "node.toml")], capture_output=True, text=True,
                              env=env, timeout=120, check=False)

    r = run("https://node.civil.example:8443", "https://10.0.0.8:2379")
    said = " ".join(r.stderr.split())
    assert r.returncode == 1 and "cannot open the node" in said, r.stderr
    assert "does not name 10.0.0.8 (etcd_endpoints[0]" in said
    assert "ledger-node pki renew --agency civil --host 10.0.0.8" in said, said
    assert "Traceback" not in r.stderr
    # its public_url may be a proxy's (re-encrypting to the node by another name): a warning
    # naming the fix, and the node goes on (to find no store here), review of ADR 55
    r = run("https://node.civil.example:8443", "https://127.0.0.1:2379")
    said = " ".join(r.stderr.split())
    assert "warning: " in said and "does not name node.civil.example (public_url)" in said
    assert "--host node.civil.example" in said and "cannot open the node: the certificate" \
        not in said, said
    # hosts it names (as `ledger-node cluster` has them: 127.0.0.1) pass the check
    r = run("https://ledger.civil.example:8443", "https://127.0.0.1:2379")
    assert r.returncode == 1 and "does not name" not in r.stderr, r.stderr
    assert "cannot open the node" in r.stderr  # (no store there)


@pytest.mark.parametrize("usage", [ExtendedKeyUsageOID.CLIENT_AUTH,
                                   ExtendedKeyUsageOID.SERVER_AUTH])
def test_a_certificate_not_for_servers_and_clients_is_refused_at_start(
        tmp_path: Path, usage: x509.ObjectIdentifier) -> None:
    """A client-only certificate was taken at start and failed at each TLS handshake. An
    agency's node and etcd member are TLS clients too (peers, etcd's own members): a
    certificate only for servers fails there, so it is refused as a client-only one is."""
    from node.pki import _ca, _leaf_cert, _replace_pair

    pki = tmp_path / "pki"
    create_pki(pki, "n", ["civil"], b"pw", now=NOW)
    ca_cert, ca_key = _ca(pki, b"pw")
    key, cert = _leaf_cert(ca_cert, ca_key, "civil", NOW, NOW + dt.timedelta(days=30),
                           [usage])
    _replace_pair(pki, "civil", key, cert, b"pw")
    with pytest.raises(PkiError, match=r"not for both TLS servers and clients.*pki renew"):
        unlock(pki, "civil", b"pw", now=NOW)
    # an agency that keeps its own key (its folder holds its request) is told to renew with
    # it, a certificate alone given back (round 39M: no test held this line's hint)
    make_request(tmp_path, "civil", b"civil-pw")
    (tmp_path / "civil.csr").rename(pki / "civil.csr")
    with pytest.raises(PkiError, match=r"not for both TLS servers and clients.*pki renew "
                                       r"--agency civil --csr civil\.csr.*its key stays"):
        unlock(pki, "civil", b"pw", now=NOW)


def test_expired_certificates_name_the_command_that_renews_them(tmp_path: Path) -> None:
    pki = tmp_path / "pki"
    create_pki(pki, "n", ["civil"], b"pw", now=NOW)
    with pytest.raises(PkiError, match=r"civil\.crt expired on .*pki renew --agency civil"):
        unlock(pki, "civil", b"pw", now=NOW + dt.timedelta(days=VALID_DAYS + 1))
    renew_agency_cert(pki, "civil", b"pw", now=NOW + dt.timedelta(days=VALID_DAYS + 1))
    with pytest.raises(PkiError, match=r"ca\.crt expired on .*pki renew-ca"):
        unlock(pki, "civil", b"pw", now=NOW + dt.timedelta(days=CA_VALID_DAYS + 1))


def test_an_agency_keeping_its_own_key_is_told_to_renew_with_its_request(
        tmp_path: Path) -> None:
    """A node of an agency that made its own key (`pki request`; the README's founders all
    do) said, of a certificate near its end, ended or lacking a host, to have the keeper run
    `pki renew --agency A` and give it a new A.crt and A.key: followed, the keeper made the
    agency's TLS key, which the agency never had at the keeper's, and the agency's own key
    no longer matched (helper round 38K). Its folder holds its request: each line names
    `renew --csr A.csr` and a certificate alone; a key the keeper made is told as before."""
    from node.pki import check_hosts, make_request

    pki, own = tmp_path / "pki", tmp_path / "civil-pki"
    create_pki(pki, "n", ["edu"], b"pw", now=NOW)
    own.mkdir()
    csr = make_request(own, "civil", b"civil-pw")
    issue_agency_cert(pki, "civil", b"pw", now=NOW, csr=csr.read_bytes())
    for name in ("ca.crt", "crl.pem", "civil.crt"):
        shutil.copyfile(pki / name, own / name)
    end = _cert(own / "civil.crt").not_valid_after_utc
    with pytest.raises(PkiError) as ended:
        unlock(own, "civil", b"civil-pw", now=end + dt.timedelta(days=1))
    with pytest.raises(PkiError) as hosts:
        check_hosts(own, "civil", {"public_url": "node.civil.example"})
    said = [str(ended.value), str(hosts.value),
            str(certificate_problem(own, "civil", end - dt.timedelta(days=WARN_DAYS - 1)))]
    said = [" ".join(s.split()) for s in said]
    for line, command in zip(said, ("renew --agency civil --csr civil.csr",
                                    "renew --agency civil --host node.civil.example --csr "
                                    "civil.csr",
                                    "renew --agency civil --csr civil.csr"), strict=True):
        assert command in line and "civil.key" not in line.split("ledger-node pki")[1], line
        assert "its key stays with it" in line, line
    # the keeper's key (copied with copy-key): a new key and certificate, as before
    gone = certificate_problem(pki, "edu", end - dt.timedelta(days=WARN_DAYS - 1))
    assert gone is not None and "--csr" not in gone and "edu.crt and edu.key" in gone, gone


def test_health_says_when_a_certificate_nears_its_end_or_is_revoked(tmp_path: Path) -> None:
    """Nodes said ok through their certificate's end, then failed on new connections with
    errors that named no certificate; a revoked one said "connection reset"."""
    pki = tmp_path / "pki"
    create_pki(pki, "n", ["civil", "edu"], b"pw", now=NOW)
    end = _cert(pki / "civil.crt").not_valid_after_utc
    assert certificate_problem(pki, "civil", end - dt.timedelta(days=WARN_DAYS + 1)) is None
    soon = certificate_problem(pki, "civil", end - dt.timedelta(days=WARN_DAYS - 1))
    assert soon is not None and f"ends in {WARN_DAYS - 1} days" in soon
    assert "pki renew --agency civil" in soon
    gone = certificate_problem(pki, "civil", end + dt.timedelta(days=1))
    # (every warning says peers refuse it "once it has ended": the word alone shows nothing)
    assert gone is not None and "civil.crt this node runs with ended (" in gone, gone
    revoke_agency_cert(pki, "edu", b"pw", now=NOW)
    # the node's folder keeps its certificate: the operator's crl.pem copied there names it
    (pki / "edu.crt").write_bytes((pki / "revoked").glob("edu*.crt").__next__().read_bytes())
    said = certificate_problem(pki, "edu", NOW)
    assert said is not None and "revocation list" in said
    # the CA's end too
    ca_end = _cert(pki / "ca.crt").not_valid_after_utc
    renew_agency_cert(pki, "civil", b"pw", now=ca_end - dt.timedelta(days=10))
    ca_soon = certificate_problem(pki, "civil", ca_end - dt.timedelta(days=10))
    assert ca_soon is not None and "ca.crt this node runs with ends in" in ca_soon
    assert "renew-ca" in ca_soon
    (pki / "civil.crt").unlink()
    unreadable = certificate_problem(pki, "civil", NOW)
    assert unreadable is not None and "the PKI folder/civil.crt" in unreadable
    # public (/v1/health): no path of the node's machine (ADR 71; round 19H's note)
    for text in (soon, gone, said, ca_soon, unreadable):
        assert str(tmp_path) not in text, text


def test_health_judges_the_certificate_the_node_runs_with(tmp_path: Path) -> None:
    """The review of ADR 54: renewed in the PKI folder, health said ok while the node still
    ran with the old copy (taken only at a restart); revoked in the operator's folder (the
    certificate moved to revoked/), health said ok; a revocation list near its next update
    (past it OpenSSL refuses every connection) was not said."""
    pki = tmp_path / "pki"
    create_pki(pki, "n", ["civil", "edu"], b"pw", now=NOW)
    rt = unlock(pki, "civil", b"pw", now=NOW)
    try:
        end = _cert(rt / "civil.crt").not_valid_after_utc
        near = end - dt.timedelta(days=9)
        renew_agency_cert(pki, "civil", b"pw", now=near)
        assert certificate_problem(pki, "civil", near) is None  # the folder's copy is new
        said = certificate_problem(pki, "civil", near, rt)
        assert said is not None and "ends in 9 days" in said and "restart" in said
        # the CA renewed in the folder: restart, not renew-ca again
        ca_end = _cert(rt / "ca.crt").not_valid_after_utc
        renew_ca(pki, b"pw", now=ca_end - dt.timedelta(days=400))
        said = certificate_problem(pki, "civil", ca_end - dt.timedelta(days=10), rt)
        assert said is not None and "ca.crt this node runs with" in said
        assert "restart" in said and "renew-ca" not in said
        revoke_agency_cert(pki, "civil", b"pw", now=near)  # its .crt leaves the folder
        said = certificate_problem(pki, "civil", near, rt)
        assert said is not None and "revocation list" in said
        assert str(tmp_path) not in said and str(rt) not in said
    finally:
        lock(rt)
    old_crl = (pki / "crl.pem").read_bytes()
    crl_end = x509.load_pem_x509_crl(old_crl).next_update_utc
    assert crl_end is not None
    later = crl_end - dt.timedelta(days=100)
    renew_ca(pki, b"pw", now=later)
    renew_agency_cert(pki, "edu", b"pw", now=later)
    assert certificate_problem(pki, "edu", crl_end - dt.timedelta(days=3)) is None
    (pki / "crl.pem").write_bytes(old_crl)  # an agency that copied ca.crt and not crl.pem
    said = certificate_problem(pki, "edu", crl_end - dt.timedelta(days=3))
    assert said is not None and "revocation list" in said and "crl.pem" in said
    (pki / "edu.crt").unlink()
    said = certificate_problem(pki, "edu", NOW)
    assert said is not None and "cannot read" in said


def test_certificates_without_key_identifiers_are_refused_where_tls_is_strict(
        tmp_path: Path) -> None:
    """Certificates made before ADR 54 fail every connection under Python 3.13's strict TLS:
    refused at start there with the commands that remake them, taken elsewhere."""
    from node.pki import _load_key, _replace_pair, check_certificates

    pki = tmp_path / "pki"
    create_pki(pki, "n", ["civil"], b"pw", now=NOW)
    key = _load_key(pki / "civil.key", b"pw")
    check_certificates(pki, "civil", key, now=NOW, strict_tls=True)
    # an agency certificate as made before: no key identifiers
    from node.pki import _ca

    ca_cert, ca_key = _ca(pki, b"pw")
    builder = (x509.CertificateBuilder().subject_name(_cert(pki / "civil.crt").subject)
               .issuer_name(ca_cert.subject).public_key(key.public_key())
               .serial_number(x509.random_serial_number()).not_valid_before(NOW)
               .not_valid_after(NOW + dt.timedelta(days=30))
               .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH,
                                                     ExtendedKeyUsageOID.CLIENT_AUTH]),
                              critical=False))
    old = builder.sign(ca_key, hashes.SHA256())
    _replace_pair(pki, "civil", key, old, b"pw")
    check_certificates(pki, "civil", key, now=NOW, strict_tls=False)
    with pytest.raises(PkiError, match=r"no authority key identifier.*pki renew-ca"):
        check_certificates(pki, "civil", key, now=NOW, strict_tls=True)


def test_certificates_pass_openssls_strict_checks(tmp_path: Path) -> None:
    """Python 3.13's default client context checks strictly (VERIFY_X509_STRICT): the CA had
    no subject key identifier and agency certificates no authority key identifier, and every
    connection to etcd and between nodes failed ("Missing Authority Key Identifier")."""
    pki = tmp_path / "pki"
    create_pki(pki, "n", ["civil"], b"pw", now=dt.datetime.now(dt.UTC))
    ca, civil = _cert(pki / "ca.crt"), _cert(pki / "civil.crt")
    ski = ca.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    aki = civil.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    assert aki.key_identifier == ski.digest
    port, thread, sock = _tls_server(pki, "civil")
    try:
        ctx = ssl.create_default_context(cafile=str(pki / "ca.crt"))
        ctx.verify_flags |= ssl.VERIFY_X509_STRICT
        with socket.create_connection(("127.0.0.1", port), timeout=10) as raw, \
                ctx.wrap_socket(raw, server_hostname="civil") as tls:
            assert tls.recv(2) == b"ok"
    finally:
        sock.close()
        thread.join(timeout=5)
    # a renewed CA keeps its key, so its identifier: what it signed before still chains
    renewed = renew_ca(pki, b"pw", now=dt.datetime.now(dt.UTC))
    assert renewed.extensions.get_extension_for_class(
        x509.SubjectKeyIdentifier).value.digest == ski.digest


# -- edges a mutation round over node/pki.py found untested (round 15) -------------------------

def test_a_new_pki_refuses_a_folder_holding_anything_and_a_bad_host_writes_nothing(
        tmp_path: Path) -> None:
    """Any file makes a folder not empty (not only a certificate); a bad host given for a later
    agency is refused before the CA's files are written; the folder made and the keys in it
    are the owner's alone."""
    used = tmp_path / "used"
    used.mkdir()
    (used / "notes.txt").write_text("kept")
    with pytest.raises(PkiError, match="not empty"):
        create_pki(used, "n", ["civil"], b"pw", now=NOW)
    assert [p.name for p in used.iterdir()] == ["notes.txt"]
    with pytest.raises(PkiError, match="neither an IP address nor a host name"):
        create_pki(tmp_path / "pki", "n", ["civil", "edu"], b"pw", now=NOW,
                   hosts={"edu": ["Bad_Host"]})
    assert not (tmp_path / "pki").exists()
    create_pki(tmp_path / "pki", "n", ["civil"], b"pw", now=NOW)
    assert stat.S_IMODE((tmp_path / "pki").stat().st_mode) == 0o700
    for key in ("ca.key", "operator.key", "civil.key"):  # sealed, and the owner's alone
        assert stat.S_IMODE((tmp_path / "pki" / key).stat().st_mode) == 0o600, key


def test_health_warns_from_the_warning_day_and_says_ended_from_the_last_second(
        tmp_path: Path) -> None:
    """Exactly WARN_DAYS left is not yet a warning; at the certificate's not-after second it
    has ended (etcd and peers refuse it then), not "ends in 0 days"."""
    pki = tmp_path / "pki"
    create_pki(pki, "n", ["civil"], b"pw", now=NOW)
    end = _cert(pki / "civil.crt").not_valid_after_utc
    assert certificate_problem(pki, "civil", end - dt.timedelta(days=WARN_DAYS)) is None
    said = certificate_problem(pki, "civil", end - dt.timedelta(days=WARN_DAYS, seconds=-1))
    assert said is not None and f"ends in {WARN_DAYS - 1} days" in said
    said = certificate_problem(pki, "civil", end)
    assert said is not None and "civil.crt this node runs with ended" in said
    said = certificate_problem(pki, "civil", end - dt.timedelta(seconds=1))
    assert said is not None and "ends in 0 days" in said


def test_a_certificate_is_taken_from_its_first_second(tmp_path: Path) -> None:
    """Valid from its not-before second (OpenSSL's rule); refused a second before (the CA's
    start is the agency's: both made at one time)."""
    from node.pki import _load_key, check_certificates

    pki = tmp_path / "pki"
    create_pki(pki, "n", ["civil"], b"pw", now=NOW)
    start = _cert(pki / "civil.crt").not_valid_before_utc
    key = _load_key(pki / "civil.key", b"pw")
    assert check_certificates(pki, "civil", key, now=start) == VALID_DAYS
    with pytest.raises(PkiError, match=r"ca\.crt is valid only from"):
        check_certificates(pki, "civil", key, now=start - dt.timedelta(seconds=1))


def test_unlock_copies_the_revocation_list_and_replaces_a_key_left_in_its_runtime(
        tmp_path: Path) -> None:
    """etcd reads crl.pem from the runtime folder (--client-crl-file): it must be the
    folder's; a runtime folder given again (a cluster's, after a stop) gets the current key."""
    pki = tmp_path / "pki"
    create_pki(pki, "n", ["civil"], b"pw", now=NOW)
    given = tmp_path / "runtime"
    given.mkdir()
    (given / "civil.key").write_bytes(b"a key left by a run before")
    rt = unlock(pki, "civil", b"pw", runtime=given, now=NOW)
    try:
        assert (rt / "crl.pem").read_bytes() == (pki / "crl.pem").read_bytes()
        key = serialization.load_pem_private_key((rt / "civil.key").read_bytes(), None)
        assert key.public_key() == _cert(pki / "civil.crt").public_key()
    finally:
        lock(rt)


def test_the_operator_certificate_is_etcds_root_client_and_kept_once_made(
        tmp_path: Path) -> None:
    """etcd takes a client certificate's CN as its user: the operator's is ``root``, for TLS
    clients only; its key comes out clear (etcd's client cannot read a sealed one), and
    ensure_operator_cert leaves one that exists."""
    from node.pki import ensure_operator_cert

    pki = tmp_path / "pki"
    create_pki(pki, "n", ["civil"], b"pw", now=NOW)
    ca_pem, cert_pem, key_pem = operator_credentials(pki, b"pw")
    assert ca_pem == (pki / "ca.crt").read_bytes()
    cert = x509.load_pem_x509_certificate(cert_pem)
    assert [a.value for a in cert.subject.get_attributes_for_oid(
        x509.oid.NameOID.COMMON_NAME)] == ["root"]
    assert list(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value) == [
        ExtendedKeyUsageOID.CLIENT_AUTH]
    key = serialization.load_pem_private_key(key_pem, None)
    assert key.public_key() == cert.public_key()
    before = [(pki / n).read_bytes() for n in ("operator.crt", "operator.key")]
    ensure_operator_cert(pki, b"pw", now=NOW + dt.timedelta(days=1))
    assert [(pki / n).read_bytes() for n in ("operator.crt", "operator.key")] == before


def test_a_wildcard_name_covers_one_label_only(tmp_path: Path) -> None:
    """As a TLS client checks it: ``*.example`` names ``a.example``, not ``a.b.example``."""
    from node.pki import _names_host

    names = [x509.DNSName("*.civil.example")]
    assert _names_host(names, "node.civil.example")
    assert _names_host(names, "NODE.Civil.Example.")
    assert not _names_host(names, "a.node.civil.example")
    assert not _names_host(names, "civil.example")


def test_a_stale_runtime_folder_of_another_user_is_left_alone(tmp_path: Path) -> None:
    """The sweep removes this user's folders whose owner died, never another user's (its key
    is theirs to remove; a shared /dev/shm holds both)."""
    if os.getuid() != 0:
        pytest.skip("making a folder another user owns needs root")
    ended = subprocess.Popen([sys.executable, "-c", "pass"])
    ended.wait()
    folders = {}
    for whose, uid in (("mine", os.getuid()), ("theirs", 4242)):
        folder = tmp_path / f"credledger-civil-{whose}"
        folder.mkdir(mode=0o700)
        (folder / "owner.pid").write_text(str(ended.pid), encoding="ascii")
        (folder / "civil.key").write_bytes(b"a clear key")
        for path in (folder, folder / "owner.pid", folder / "civil.key"):
            os.chown(path, uid, uid)
        folders[whose] = folder
    assert sweep_stale_runtimes(tmp_path, "civil") == [folders["mine"]]
    assert not folders["mine"].exists()
    assert (folders["theirs"] / "civil.key").read_bytes() == b"a clear key"


def test_a_pem_ca_key_from_before_is_sealed_at_its_next_use(tmp_path: Path) -> None:
    """A CA key written before ADR 46 (PEM, PBKDF2 at 2,048 rounds, under the passphrase the
    Argon2id key files share) was read and kept as it was by every command, renew-ca too: the
    cheap file ADR 46 names as the way to guess the passphrase stayed for good. The first
    command that opens it seals it as key files are."""
    pki = tmp_path / "pki"
    create_pki(pki, "n", ["civil"], b"pw", now=NOW)
    key_file = pki / "ca.key"
    der = open_secret(key_file.read_bytes(), b"pw", "tls-key", key_file)
    old = serialization.load_der_private_key(der, None)
    assert isinstance(old, ec.EllipticCurvePrivateKey)
    key_file.write_bytes(old.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.BestAvailableEncryption(b"pw")))
    with pytest.raises(PkiError, match="wrong passphrase"):
        issue_agency_cert(pki, "edu", b"nope", now=NOW)
    assert key_file.read_bytes().startswith(b"-----BEGIN")  # not opened: left as it was
    issue_agency_cert(pki, "edu", b"pw", now=NOW)
    assert not key_file.read_bytes().startswith(b"-----BEGIN")
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    new = serialization.load_der_private_key(
        open_secret(key_file.read_bytes(), b"pw", "tls-key", key_file), None)
    assert isinstance(new, ec.EllipticCurvePrivateKey)
    assert new.private_numbers() == old.private_numbers()  # the same CA key
    edu = x509.load_pem_x509_certificate((pki / "edu.crt").read_bytes())
    edu.verify_directly_issued_by(x509.load_pem_x509_certificate((pki / "ca.crt").read_bytes()))


def test_the_network_id_is_checked_and_the_longest_one_fits_the_ca_name(tmp_path: Path) -> None:
    """The CA's common name was "<network> ledger CA", which X.509 caps at 64 characters: a
    network id of 55 to 64 characters (valid on the ledger) ended ``pki create`` in a
    ValueError traceback, after making the folder; an id no ledger could have (``x/y``, ``""``)
    was taken. A bad id is refused before anything is written; the longest one fits."""
    longest = "n" * 64
    create_pki(tmp_path / "long", longest, ["civil"], b"pw", now=NOW)
    ca = x509.load_pem_x509_certificate((tmp_path / "long" / "ca.crt").read_bytes())
    assert ca.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)[0].value == longest
    create_pki(tmp_path / "short", "district-7", ["civil"], b"pw", now=NOW)
    short = x509.load_pem_x509_certificate((tmp_path / "short" / "ca.crt").read_bytes())
    assert short.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)[0].value == \
        "district-7 ledger CA"
    for bad in ("", "x/y", "Upper", "n" * 65):
        with pytest.raises(PkiError, match="network id"):
            create_pki(tmp_path / "bad", bad, ["civil"], b"pw", now=NOW)
        assert not (tmp_path / "bad").exists()


def _pki_at_once(*runs: list[str]) -> list[subprocess.CompletedProcess[str]]:
    """``ledger-node pki`` commands started together, each waited for."""
    env = {**os.environ, "LEDGER_KEY_PASSPHRASE": "pw"}
    procs = [subprocess.Popen([str(BIN / "ledger-node"), "pki", *args], env=env, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE) for args in runs]
    done = []
    for proc in procs:
        out, errs = proc.communicate(timeout=120)
        done.append(subprocess.CompletedProcess(proc.args, proc.returncode, out, errs))
    return done


def test_two_revokes_at_once_keep_both_on_the_revocation_list(tmp_path: Path) -> None:
    # Each revoke read crl.pem, added its agency and wrote the list whole: two at once (two
    # operators' terminals, a script) dropped one agency's entry while its certificate was
    # moved to revoked/ as if revoked. Under the PKI folder's lock the second reads the first's.
    for round_ in range(6):
        pki = tmp_path / f"pki{round_}"
        create_pki(pki, "n", ["civil", "edu", "health"], b"pw", now=NOW)
        serials = {a: _serial(pki / f"{a}.crt") for a in ("civil", "edu")}
        done = _pki_at_once(["revoke", "--pki", str(pki), "--agency", "civil"],
                            ["revoke", "--pki", str(pki), "--agency", "edu"])
        assert [r.returncode for r in done] == [0, 0], [r.stderr for r in done]
        crl = x509.load_pem_x509_crl((pki / "crl.pem").read_bytes())
        listed = {e.serial_number for e in crl}
        assert listed == set(serials.values()), f"round {round_}: a revocation was lost"
        assert crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number == 3


def test_two_adds_of_one_agency_at_once_leave_a_matching_pair(tmp_path: Path) -> None:
    # Both passed "no certificate yet", both wrote a key, one the certificate: the key left
    # could be the other run's, a pair that no longer unlocks. Now the second is refused.
    for round_ in range(6):
        pki = tmp_path / f"pki{round_}"
        create_pki(pki, "n", ["civil"], b"pw", now=NOW)
        done = _pki_at_once(["add", "--pki", str(pki), "--agency", "edu"],
                            ["add", "--pki", str(pki), "--agency", "edu"])
        assert sorted(r.returncode for r in done) == [0, 1], [r.stderr for r in done]
        refused = next(r for r in done if r.returncode)
        assert "already has a certificate for 'edu'" in refused.stderr, refused.stderr
        assert "Traceback" not in refused.stderr
        lock(unlock(pki, "edu", b"pw"))  # the key is the certificate's


def test_etcd_take_out_refuses_an_agency_whose_certificate_is_not_revoked(
        tmp_path: Path) -> None:
    """`ledger-node etcd take-out --agency health` took a current agency's etcd user and
    member out (helper round 31G: a slip of one agency's name for another's shut a running
    agency out of the network's etcd), though its help and the README are for an agency
    governance removed, after `ledger-node pki revoke`. Refused while the PKI folder holds
    an unrevoked certificate of the agency, before etcd is asked; taken once it is revoked
    (here etcd, not running, is then what answers)."""
    pki = tmp_path / "pki"
    create_pki(pki, "n", ["civil", "health"], b"pw", now=dt.datetime.now(dt.UTC))
    closed = f"https://127.0.0.1:{free_base(1)}"

    def take_out(agency: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(BIN / "ledger-node"), "etcd", "take-out", "--pki", str(pki),
                               "--endpoint", closed, "--agency", agency],
                              capture_output=True, text=True, timeout=120, check=False,
                              env={**os.environ, "LEDGER_KEY_PASSPHRASE": "pw",
                                   "COLUMNS": "300"}, stdin=subprocess.DEVNULL)

    r = take_out("health")
    said = " ".join(r.stderr.split())
    assert r.returncode == 1 and "Traceback" not in said, said
    assert "holds a valid certificate of 'health'" in said, said
    assert "ledger-node pki revoke --pki" in said and "nothing was changed" in said, said
    revoke_agency_cert(pki, "health", b"pw", now=dt.datetime.now(dt.UTC))
    r = take_out("health")
    said = " ".join(r.stderr.split())
    assert r.returncode == 1 and "valid certificate" not in said, said
    assert "cannot take health out of etcd" in said, said  # etcd is not running


@pytest.mark.parametrize(("args", "said"), [
    (["pki", "create", "--out", "{d}/new", "--network", "Bad Net", "--agency", "civil"],
     "network id"),
    (["pki", "create", "--out", "{d}/new", "--network", "n", "--agency", "Bad Id"],
     "agency id"),
    (["pki", "create", "--out", "{d}/new", "--network", "n", "--agency", "civil", "--host",
      "civil=bad host!"], "neither an IP address"),
    (["pki", "add", "--pki", "{d}/pki", "--agency", "Bad Id"], "agency id"),
    (["pki", "add", "--pki", "{d}/pki", "--agency", "market", "--host", "bad host!"],
     "neither an IP address"),
    (["pki", "renew", "--pki", "{d}/pki", "--agency", "civil", "--host", "bad host!"],
     "neither an IP address"),
    (["credit-secret", "--out", "{d}/missing-dir/x"], "no folder"),
    # a PKI's CA key in a folder no one made (a mistyped path): refused as every other file
    # command refuses an output in no folder (ADR 78 Left: `pki create` made the parents)
    (["pki", "create", "--out", "{d}/missing-dir/pki", "--network", "n", "--agency",
      "civil"], "no folder"),
    # a mistyped --pki: it said the PKI was "made before ADR 48" and told to run `pki add`
    (["etcd", "members", "--pki", "{d}/pkl", "--endpoint", "https://127.0.0.1:1"],
     "no folder"),
])
def test_bad_pki_and_secret_input_is_exit_2_and_changes_nothing(
        tmp_path: Path, args: list[str], said: str) -> None:
    """The help says exit 2 for bad input; a bad network id, agency id or host, or a
    credit-secret --out in no folder, exited 1 as if the command had failed (round 32J); a
    pki create --out in no folder made the folders above it, and an etcd command's --pki
    that is no folder was called a PKI from before ADR 48 (round 34F)."""
    import datetime as dt

    from typer.testing import CliRunner

    from node import cli
    from node.pki import create_pki

    create_pki(tmp_path / "pki", "n", ["civil"], b"pki-pw", now=dt.datetime.now(dt.UTC))
    before = sorted(p.name for p in (tmp_path / "pki").iterdir())
    r = CliRunner().invoke(cli.app, [a.format(d=tmp_path) for a in args],
                           env={"LEDGER_KEY_PASSPHRASE": "pki-pw"})
    assert r.exit_code == 2 and said in " ".join(r.output.split()), r.output
    assert sorted(p.name for p in (tmp_path / "pki").iterdir()) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pki"]


def test_pki_copy_key_gives_an_agency_its_key_under_its_own_passphrase(tmp_path: Path) -> None:
    """An agency whose TLS key the PKI's keeper made (`pki add` without --csr; the README's
    newcomer now makes its own with `pki request`) takes it from the keeper, who sealed it under
    the keeper's passphrase; its node and etcd member open it with the agency's own (as its
    other keys): `pki copy-key` seals a copy again for it. Round 33E: there was no way to, so
    a newcomer with a passphrase of its own could not start (unless the keeper shared one)."""
    pki, own = tmp_path / "pki", tmp_path / "market-pki"
    create_pki(pki, "district-7", ["civil", "market"], b"pw", now=dt.datetime.now(dt.UTC))
    own.mkdir(mode=0o700)
    for name in ("ca.crt", "market.crt"):
        shutil.copyfile(pki / name, own / name)
    env = {**os.environ, "LEDGER_FROM_PASSPHRASE": "pw", "LEDGER_KEY_PASSPHRASE": "market-pw"}
    bare = {k: v for k, v in env.items() if not k.startswith("LEDGER_")}
    # bad input: exit 2, before any passphrase is asked (none given: a prompt would fail)
    for args, said in ((["--agency", "markt", "--out", str(own / "m.key")], "no key of markt"),
                       (["--agency", "market", "--out", str(tmp_path / "no" / "m.key")],
                        "no folder"),
                       (["--agency", "market", "--out", str(own / "ca.crt")], "exists")):
        r = _pki("copy-key", "--pki", str(pki), *args, env=bare)
        assert r.returncode == 2 and said in " ".join(r.stderr.split()), r.stderr
        assert "Passphrase" not in r.stderr
    # a wrong keeper's passphrase: exit 1, nothing written
    r = _pki("copy-key", "--pki", str(pki), "--agency", "market", "--out",
             str(own / "market.key"), env={**env, "LEDGER_FROM_PASSPHRASE": "wrong"})
    assert r.returncode == 1 and not (own / "market.key").exists(), r.stderr
    # the keeper's own passphrase given as the agency's (round 38K): the keeper would open it
    r = _pki("copy-key", "--pki", str(pki), "--agency", "market", "--out",
             str(own / "market.key"), env={**env, "LEDGER_KEY_PASSPHRASE": "pw"})
    assert r.returncode == 2 and "passphrase is the keeper's" in r.stderr, r.stderr
    assert not (own / "market.key").exists()
    r = _pki("copy-key", "--pki", str(pki), "--agency", "market", "--out",
             str(own / "market.key"), env=env)
    assert r.returncode == 0, r.stderr
    assert stat.S_IMODE((own / "market.key").stat().st_mode) == 0o600
    with pytest.raises(PkiError):
        unlock(own, "market", b"pw")
    runtime = unlock(own, "market", b"market-pw")
    try:
        clear = serialization.load_pem_private_key((runtime / "market.key").read_bytes(), None)
        cert = x509.load_pem_x509_certificate((own / "market.crt").read_bytes())
        assert clear.public_key().public_numbers() == cert.public_key().public_numbers()
    finally:
        lock(runtime)


def test_pki_copy_key_hands_an_agency_no_key_but_its_own(tmp_path: Path) -> None:
    """A sealed TLS key does not say whose it is: another agency's key put in the keeper's
    folder as market.key (a copy, or a link, by whoever could write the folder for a minute,
    or a slip of the keeper's) was sealed again under market's passphrase and handed to market,
    which then held civil's private key (helper round 40S). `copy-key` gives only the key of
    the agency's certificate: exit 1, the line naming it, nothing written."""
    pki, own = tmp_path / "pki", tmp_path / "market-pki"
    create_pki(pki, "district-7", ["civil", "market"], b"pw", now=dt.datetime.now(dt.UTC))
    own.mkdir(mode=0o700)
    env = {**os.environ, "LEDGER_FROM_PASSPHRASE": "pw", "LEDGER_KEY_PASSPHRASE": "market-pw",
           "COLUMNS": "300"}
    market = (pki / "market.key").read_bytes()
    for put in ("copy", "link"):
        (pki / "market.key").unlink()
        if put == "copy":
            shutil.copyfile(pki / "civil.key", pki / "market.key")
        else:
            (pki / "market.key").symlink_to(pki / "civil.key")
        r = _pki("copy-key", "--pki", str(pki), "--agency", "market", "--out",
                 str(own / "market.key"), env=env)
        told = " ".join(r.stderr.split())
        assert r.returncode == 1 and f"is not the key of {pki / 'market.crt'}" in told, told
        assert "Traceback" not in told and list(own.iterdir()) == [], told
    (pki / "market.key").unlink()
    (pki / "market.key").write_bytes(market)
    r = _pki("copy-key", "--pki", str(pki), "--agency", "market", "--out",
             str(own / "market.key"), env=env)
    assert r.returncode == 0, r.stderr


def test_a_tls_key_is_never_sealed_under_an_empty_passphrase(tmp_path: Path) -> None:
    """`seal_key_again` and `resealed_key` (copy-key's and seal-again's seal) refuse an empty
    new passphrase, which would leave the agency's TLS key as good as clear, and leave the key
    file as it was; `make_request` (pki request) makes no key under one (round 38M: no test
    held either refusal; the CLI refuses an empty passphrase before them)."""
    pki = tmp_path / "pki"
    create_pki(pki, "n", ["edu"], b"pw", now=NOW)
    before = (pki / "edu.key").read_bytes()
    with pytest.raises(PkiError, match="empty passphrase"):
        seal_key_again(pki / "edu.key", b"pw")(b"")
    with pytest.raises(PkiError, match="empty passphrase"):
        resealed_key(pki / "edu.key", b"pw", b"")
    assert (pki / "edu.key").read_bytes() == before
    sealed = seal_key_again(pki / "edu.key", b"pw")(b"edu-pw")
    assert b"PRIVATE" not in sealed and open_secret(sealed, b"edu-pw", "tls-key", pki)
    own = tmp_path / "edu-pki"  # nor is an agency's own key made under one
    own.mkdir()
    with pytest.raises(PkiError, match="empty passphrase"):
        make_request(own, "edu", b"")
    assert list(own.iterdir()) == []


def test_an_agency_keeps_its_tls_key_and_the_keeper_signs_its_request(tmp_path: Path) -> None:
    """`pki request` (the agency) makes its TLS key, sealed under its own passphrase, and a
    signing request; `pki add --csr` (the keeper) certifies that key, with the PKI's name,
    hosts and usages, and makes or keeps no key of the agency: the private key never leaves
    it (ADR 78 left "the PKI keeper makes every TLS key"; round 36K). A request of another
    agency, of another kind of key, or no request is refused before the keeper's passphrase,
    and makes nothing. The agency's pair opens and serves TLS the CA vouches for."""
    pki, own = tmp_path / "pki", tmp_path / "market-pki"
    agency = {k: v for k, v in os.environ.items() if not k.startswith("LEDGER_")}
    # a CA with no agency yet: each is certified after, from its request
    r = _pki("create", "--out", str(pki), "--network", "district-7",
             env={**agency, "LEDGER_KEY_PASSPHRASE": "pw"})
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in pki.iterdir()) == ["ca.crt", "ca.key", "crl.pem",
                                                      "operator.crt", "operator.key"]
    r = _pki("request", "--agency", "market", "--out", str(own),
             env={**agency, "LEDGER_KEY_PASSPHRASE": "market-pw"})
    assert r.returncode == 0, r.stderr
    # the keeper's command as said runs as it is, its PKI folder named (round 37K)
    assert ("ledger-node pki add --pki PKI --agency market --csr market.csr"
            in " ".join(r.stderr.split())), r.stderr
    assert stat.S_IMODE(own.stat().st_mode) == 0o700
    assert stat.S_IMODE((own / "market.key").stat().st_mode) == 0o600
    assert b"PRIVATE" not in (own / "market.key").read_bytes()  # sealed
    r = _pki("request", "--agency", "market", "--out", str(own),
             env={**agency, "LEDGER_KEY_PASSPHRASE": "market-pw"})
    assert r.returncode == 2 and "exists" in r.stderr and "Passphrase" not in r.stderr
    # a request alone (its key moved away) is written over neither (round 38M)
    (own / "market.key").rename(tmp_path / "market.key")
    r = _pki("request", "--agency", "market", "--out", str(own), env=agency)
    assert r.returncode == 2 and "market.csr exists" in " ".join(r.stderr.split()), r.stderr
    assert "Passphrase" not in r.stderr and not (own / "market.key").exists()
    (tmp_path / "market.key").rename(own / "market.key")

    other = tmp_path / "other.csr"  # a P-384 key's request, named market
    key384 = ec.generate_private_key(ec.SECP384R1())
    other.write_bytes(x509.CertificateSigningRequestBuilder().subject_name(x509.Name([
        x509.NameAttribute(x509.oid.NameOID.COMMON_NAME, "market")])).sign(
            key384, hashes.SHA256()).public_bytes(serialization.Encoding.PEM))
    for args, said in ((["--agency", "civil2", "--csr", str(own / "market.csr")],
                        "not civil2's: it names 'market'"),
                       (["--agency", "market", "--csr", str(other)], "not a P-256"),
                       (["--agency", "market", "--csr", str(pki / "ca.crt")],
                        "no PEM certificate signing request"),
                       (["--agency", "market", "--csr", str(tmp_path / "none.csr")], "none.csr")):
        r = _pki("add", "--pki", str(pki), *args, env=agency)
        assert r.returncode == 2 and said in " ".join(r.stderr.split()), (args, r.stderr)
        assert "Passphrase" not in r.stderr and "Traceback" not in r.stderr
        assert not list(pki.glob("market.*")) and not list(pki.glob("civil2.*"))

    r = _pki("add", "--pki", str(pki), "--agency", "market", "--host", "market.example",
             "--csr", str(own / "market.csr"), env={**agency, "LEDGER_KEY_PASSPHRASE": "pw"})
    assert r.returncode == 0, r.stderr
    assert "its key stays with the agency" in " ".join(r.stderr.split())
    assert (pki / "market.crt").exists() and not (pki / "market.key").exists()
    cert = x509.load_pem_x509_certificate((pki / "market.crt").read_bytes())
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "market.example" in names.get_values_for_type(x509.DNSName)
    assert list(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value) == [
        ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
    for name in ("ca.crt", "crl.pem", "market.crt"):
        shutil.copyfile(pki / name, own / name)
    with pytest.raises(PkiError):
        unlock(own, "market", b"pw")  # the keeper's passphrase opens nothing of the agency's
    runtime = unlock(own, "market", b"market-pw")
    try:
        server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        server.load_cert_chain(str(runtime / "market.crt"), str(runtime / "market.key"))
        client = ssl.create_default_context(cafile=str(pki / "ca.crt"))
        a, b = socket.socketpair()
        ends: list[ssl.SSLSocket] = []
        with a, b:
            served = threading.Thread(
                target=lambda: ends.append(server.wrap_socket(a, server_side=True)))
            served.start()
            with client.wrap_socket(b, server_hostname="market.example") as tls:
                assert tls.getpeercert()["subject"] == ((("organizationName", "credledger"),),
                                                        (("commonName", "market"),))
            served.join()
            for end in ends:
                end.close()
        assert len(ends) == 1  # the server's handshake ended
    finally:
        lock(runtime)


def test_a_request_that_cannot_be_written_leaves_no_key_behind(tmp_path: Path) -> None:
    """`pki request`: the key is written first, then its request; a request that cannot be
    written (here a link to nowhere in its place, which the look before takes for no file
    and the write, never following a link, refuses) removes the key this run made, which no
    request names: the agency runs it again as if nothing had happened (ADR 81 left this
    untested; helper round 40S: without the removal, the key stayed and the next run was
    refused for it)."""
    own = tmp_path / "edu-pki"
    own.mkdir()
    (own / "edu.csr").symlink_to(tmp_path / "nowhere.csr")
    agency = {k: v for k, v in os.environ.items() if not k.startswith("LEDGER_")}
    r = _pki("request", "--agency", "edu", "--out", str(own),
             env={**agency, "LEDGER_KEY_PASSPHRASE": "edu-pw", "COLUMNS": "300"})
    assert r.returncode == 1 and f"{own / 'edu.csr'}: File exists" in r.stderr, r.stderr
    assert "Traceback" not in r.stderr
    assert sorted(p.name for p in own.iterdir()) == ["edu.csr"]  # no key, no temporary file
    assert not (tmp_path / "nowhere.csr").exists()  # nothing written through the link
    (own / "edu.csr").unlink()
    csr = make_request(own, "edu", b"edu-pw")
    check_request(csr.read_bytes(), "edu")


def test_pki_add_csr_refuses_an_odd_request_and_takes_nothing_else_from_it(
        tmp_path: Path) -> None:
    """`pki add --csr` (round 37K): a request whose key or curve the library does not know (an
    SM2 key openssl makes, here its algorithm's id changed) is refused with a clear line, not a
    traceback; a file of two requests (the keeper would review one and sign the other) is
    refused; a request's name is quoted short. A request that asks for CA:true and other
    agencies' hosts is certified with the PKI's extensions only."""
    pki = tmp_path / "pki"
    assert _pki("create", "--out", str(pki), "--network", "district-7").returncode == 0

    def request(name: str, extensions: tuple[x509.ExtensionType, ...] = ()) -> bytes:
        builder = x509.CertificateSigningRequestBuilder().subject_name(x509.Name([
            x509.NameAttribute(x509.oid.NameOID.COMMON_NAME, name)]))
        for ext in extensions:
            builder = builder.add_extension(ext, critical=True)
        return builder.sign(ec.generate_private_key(ec.SECP256R1()), hashes.SHA256()
                            ).public_bytes(serialization.Encoding.PEM)

    der = x509.load_pem_x509_csr(request("market")).public_bytes(serialization.Encoding.DER)
    ec_key, curve = bytes.fromhex("06072a8648ce3d0201"), bytes.fromhex("06082a8648ce3d030107")
    assert der.count(ec_key) == 1 and der.count(curve) == 1

    def pem(body: bytes) -> bytes:
        return x509.load_der_x509_csr(body).public_bytes(serialization.Encoding.PEM)

    def tlv(tag: int, body: bytes) -> bytes:
        size = len(body).to_bytes((len(body).bit_length() + 7) // 8 or 1, "big")
        return bytes([tag]) + (size if len(body) < 128 else bytes([0x80 | len(size)]) + size) \
            + body

    # a request signed with ECDSA over SHA-1 (openssl req -sha1 makes one; the library signs
    # none), its signature right: refused for its hash, not as a signature that does not verify
    key = ec.generate_private_key(ec.SECP256R1())
    tbs = x509.CertificateSigningRequestBuilder().subject_name(x509.Name([
        x509.NameAttribute(x509.oid.NameOID.COMMON_NAME, "market")])).sign(
            key, hashes.SHA256()).tbs_certrequest_bytes
    sha1 = tlv(0x30, tbs + tlv(0x30, tlv(0x06, bytes.fromhex("2a8648ce3d0401")))
               + tlv(0x03, b"\0" + key.sign(tbs, ec.ECDSA(hashes.SHA1()))))
    assert x509.load_der_x509_csr(sha1).signature_hash_algorithm.name == "sha1"
    long_name = request("market" + "x" * 58)
    # signed by no holder of its key: its signature's last byte changed (round 38M)
    forged = pem(der[:-1] + bytes([der[-1] ^ 1]))
    assert x509.load_pem_x509_csr(forged).public_key() == x509.load_der_x509_csr(
        der).public_key()

    def named(*names: str) -> bytes:  # a request with a common name for each of names
        return x509.CertificateSigningRequestBuilder().subject_name(x509.Name([
            x509.NameAttribute(x509.oid.NameOID.COMMON_NAME, n) for n in names])).sign(
                ec.generate_private_key(ec.SECP256R1()), hashes.SHA256()
            ).public_bytes(serialization.Encoding.PEM)

    cases = [(pem(der.replace(ec_key, bytes.fromhex("06072a8648ce3d0209"))), "not a P-256"),
             (pem(der.replace(curve, bytes.fromhex("06082a8648ce3d030109"))), "not a P-256"),
             (request("market") + request("market"), "two signing requests"),
             (forged, "signature does not verify under its key"),
             # the agency's name beside another's is not the agency's request (round 38M)
             (named("market", "civil"), "it names 'market', 'civil'"),
             (named("one", "two", "three", "fourth", "fifth"),
              "it names 'one', 'two', 'three', …"),
             (long_name, "it names 'marketxxxx"),
             (pem(sha1), "signed with SHA1, a hash too weak")]
    for i, (body, said) in enumerate(cases):
        (tmp_path / f"{i}.csr").write_bytes(body)
        r = _pki("add", "--pki", str(pki), "--agency", "market", "--csr",
                 str(tmp_path / f"{i}.csr"))
        assert r.returncode == 2 and said in " ".join(r.stderr.split()), (i, r.stderr)
        assert "Traceback" not in r.stderr and "Passphrase" not in r.stderr
        assert not list(pki.glob("market.*"))
        if i == 5:
            assert "fourth" not in r.stderr  # three names are said, not all (round 38M)
    assert "x" * 50 not in r.stderr  # the hostile name is cut

    asks = tmp_path / "asks.csr"
    asks.write_bytes(request("market", (
        x509.BasicConstraints(ca=True, path_length=None),
        x509.SubjectAlternativeName([x509.DNSName("civil.example")]),
        x509.KeyUsage(True, False, False, False, False, True, True, False, False))))
    r = _pki("add", "--pki", str(pki), "--agency", "market", "--csr", str(asks))
    assert r.returncode == 0, r.stderr
    cert = x509.load_pem_x509_certificate((pki / "market.crt").read_bytes())
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "civil.example" not in names.get_values_for_type(x509.DNSName)
    assert "market" in names.get_values_for_type(x509.DNSName)
    assert not any(isinstance(e.value, x509.KeyUsage) for e in cert.extensions)
    assert cert.subject == x509.Name([
            x509.NameAttribute(x509.oid.NameOID.ORGANIZATION_NAME, "credledger"),
            x509.NameAttribute(x509.oid.NameOID.COMMON_NAME, "market")])


def test_pki_add_and_renew_write_over_no_key_the_agency_keeps(tmp_path: Path) -> None:
    """An agency's own key in the keeper's PKI folder (its request made there: one machine, or
    a copy) is one the keeper's passphrase does not open. `add --csr` and `renew --csr` keep
    it (round 37K); `add` and `renew` without --csr wrote a new key of the keeper's over it,
    and the agency's key was lost (helper round 40S). Refused: exit 1, the line naming the
    key and --csr, nothing in the folder changed."""
    pki = tmp_path / "pki"
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEDGER_")}
    keeper = {**env, "LEDGER_KEY_PASSPHRASE": "pw", "COLUMNS": "300"}
    assert _pki("create", "--out", str(pki), "--network", "district-7", "--agency", "edu",
                env=keeper).returncode == 0
    r = _pki("request", "--agency", "market", "--out", str(pki),
             env={**env, "LEDGER_KEY_PASSPHRASE": "market-pw"})
    assert r.returncode == 0, r.stderr
    own = tmp_path / "edu-pki"  # edu's own key, certified, then kept here too
    own.mkdir()
    make_request(own, "edu", b"edu-pw")
    r = _pki("renew", "--pki", str(pki), "--agency", "edu", "--csr", str(own / "edu.csr"),
             env=keeper)
    assert r.returncode == 0, r.stderr
    shutil.copyfile(own / "edu.key", pki / "edu.key")
    for agency, command in (("market", "add"), ("edu", "renew")):
        before = {p.name: p.read_bytes() for p in pki.iterdir() if p.is_file()}
        r = _pki(command, "--pki", str(pki), "--agency", agency, env=keeper)
        told = " ".join(r.stderr.split())
        assert r.returncode == 1, (command, told)
        assert f"{pki / (agency + '.key')} is a key the keeper's passphrase does not open" \
            in told and "--csr" in told, told
        assert {p.name: p.read_bytes() for p in pki.iterdir() if p.is_file()} == before
        open_secret((pki / f"{agency}.key").read_bytes(), f"{agency}-pw".encode(), "tls-key",
                    pki)  # still the agency's


def test_pki_renew_csr_certifies_the_key_the_agency_keeps(tmp_path: Path) -> None:
    """`pki renew --csr` (round 37K; ADR 80 left `renew` making the new TLS key at the
    keeper's): an agency the keeper made a key for moves to a key it made itself; the new
    certificate is for the request's key with the old one's hosts, the keeper's old key is
    removed (it is the old certificate's, kept in superseded/), and the agency's pair opens
    under its own passphrase. A request of another agency is refused before the passphrase
    and changes nothing; the same request serves the next renewal (same key, new
    certificate)."""
    pki, own = tmp_path / "pki", tmp_path / "edu-pki"
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEDGER_")}
    keeper = {**env, "LEDGER_KEY_PASSPHRASE": "pw"}
    assert _pki("create", "--out", str(pki), "--network", "district-7", "--agency", "edu",
                "--agency", "civil", "--host", "edu=edu.example", env=keeper).returncode == 0
    r = _pki("request", "--agency", "edu", "--out", str(own),
             env={**env, "LEDGER_KEY_PASSPHRASE": "edu-pw"})
    assert r.returncode == 0, r.stderr
    r = _pki("request", "--agency", "civil", "--out", str(tmp_path / "civil-pki"),
             env={**env, "LEDGER_KEY_PASSPHRASE": "civil-pw"})
    assert r.returncode == 0, r.stderr
    first = (pki / "edu.crt").read_bytes()
    before = {p.name: p.read_bytes() for p in pki.iterdir() if p.is_file()}
    r = _pki("renew", "--pki", str(pki), "--agency", "edu", "--csr",
             str(tmp_path / "civil-pki" / "civil.csr"), env=env)
    assert r.returncode == 2 and "not edu's" in r.stderr, r.stderr
    assert "Passphrase" not in r.stderr
    assert {p.name: p.read_bytes() for p in pki.iterdir() if p.is_file()} == before

    # a key in the PKI folder the keeper's passphrase does not open is the agency's: kept
    (pki / "edu.key").rename(tmp_path / "keepers-edu.key")
    shutil.copyfile(own / "edu.key", pki / "edu.key")
    r = _pki("renew", "--pki", str(pki), "--agency", "edu", "--csr", str(own / "edu.csr"),
             env=keeper)
    assert r.returncode != 0 and "does not open" in " ".join(r.stderr.split()), r.stderr
    assert {p.name: p.read_bytes() for p in pki.iterdir() if p.is_file()} == {
        **before, "edu.key": (own / "edu.key").read_bytes()}
    assert not (pki / "superseded").exists()
    (tmp_path / "keepers-edu.key").replace(pki / "edu.key")

    wanted = x509.load_pem_x509_csr((own / "edu.csr").read_bytes()).public_key()
    for _ in range(2):  # the same request serves the next renewal
        r = _pki("renew", "--pki", str(pki), "--agency", "edu", "--csr", str(own / "edu.csr"),
                 env=keeper)
        assert r.returncode == 0, r.stderr
        assert "its key stays with the agency" in " ".join(r.stderr.split())
        assert not (pki / "edu.key").exists() and (pki / "civil.key").exists()
        cert = x509.load_pem_x509_certificate((pki / "edu.crt").read_bytes())
        assert cert.public_key() == wanted
        names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert "edu.example" in names.get_values_for_type(x509.DNSName)
    assert len(list((pki / "superseded").glob("edu-*.crt"))) == 2
    assert first in [p.read_bytes() for p in (pki / "superseded").iterdir()]
    for name in ("ca.crt", "crl.pem", "edu.crt"):
        shutil.copyfile(pki / name, own / name)
    runtime = unlock(own, "edu", b"edu-pw")
    lock(runtime)


def test_pki_add_or_renew_csr_refuses_a_key_whose_certificate_was_revoked(
        tmp_path: Path) -> None:
    """A key whose certificate was revoked (a stolen key: README "revoke ... or a stolen key")
    is certified again by no request (round 37K: the agency's old request, kept beside its key,
    given again to `pki add --csr` after `revoke` certified the stolen key anew), for the
    agency or any other; the refusal writes nothing. A new request is certified."""
    pki, own, new = tmp_path / "pki", tmp_path / "market-pki", tmp_path / "market-new"
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEDGER_")}
    keeper = {**env, "LEDGER_KEY_PASSPHRASE": "pw"}
    assert _pki("create", "--out", str(pki), "--network", "district-7", "--agency", "civil",
                env=keeper).returncode == 0
    for folder in (own, new):
        assert _pki("request", "--agency", "market", "--out", str(folder),
                    env={**env, "LEDGER_KEY_PASSPHRASE": "market-pw"}).returncode == 0
    csr = str(own / "market.csr")
    assert _pki("add", "--pki", str(pki), "--agency", "market", "--csr", csr,
                env=keeper).returncode == 0
    assert _pki("revoke", "--pki", str(pki), "--agency", "market", env=keeper).returncode == 0
    before = {p: p.read_bytes() for p in pki.rglob("*") if p.is_file()}
    r = _pki("add", "--pki", str(pki), "--agency", "market", "--csr", csr, env=keeper)
    assert r.returncode != 0 and "revoked" in r.stderr, r.stderr
    assert "Traceback" not in r.stderr
    assert {p: p.read_bytes() for p in pki.rglob("*") if p.is_file()} == before
    r = _pki("add", "--pki", str(pki), "--agency", "market", "--csr", str(new / "market.csr"),
             env=keeper)
    assert r.returncode == 0, r.stderr
    # renew: neither the revoked key
    before = {p: p.read_bytes() for p in pki.rglob("*") if p.is_file()}
    r = _pki("renew", "--pki", str(pki), "--agency", "market", "--csr", csr, env=keeper)
    assert r.returncode != 0 and "revoked" in r.stderr, r.stderr
    assert {p: p.read_bytes() for p in pki.rglob("*") if p.is_file()} == before


def test_pki_add_csr_keeps_an_agencys_own_key_made_in_the_pki_folder(tmp_path: Path) -> None:
    """A founder that keeps the PKI made its own request into the PKI folder (`pki request
    --out pki`): `pki add --csr` deleted that key, as if a stopped `add` had left it, and
    certified a key no one had any more (round 37K). A key the keeper's passphrase does not
    open is not the keeper's: refused, nothing written or deleted; one a stopped `add` left
    (the keeper's) is still replaced."""
    pki = tmp_path / "pki"
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEDGER_")}
    keeper = {**env, "LEDGER_KEY_PASSPHRASE": "pw"}
    assert _pki("create", "--out", str(pki), "--network", "district-7",
                env=keeper).returncode == 0
    r = _pki("request", "--agency", "civil", "--out", str(pki),
             env={**env, "LEDGER_KEY_PASSPHRASE": "civil-pw"})
    assert r.returncode == 0, r.stderr
    before = {p: p.read_bytes() for p in pki.rglob("*") if p.is_file()}
    r = _pki("add", "--pki", str(pki), "--agency", "civil", "--csr", str(pki / "civil.csr"),
             env=keeper)
    assert r.returncode != 0 and "civil.key" in r.stderr, r.stderr
    assert "Traceback" not in r.stderr
    assert {p: p.read_bytes() for p in pki.rglob("*") if p.is_file()} == before
    own = tmp_path / "civil-pki"
    own.mkdir()
    for name in ("civil.key", "civil.csr"):
        (pki / name).rename(own / name)
    # a key the keeper made, left by a stopped `add` (here: one its passphrase seals)
    assert _pki("request", "--agency", "civil", "--out", str(tmp_path / "left"),
                env=keeper).returncode == 0
    (tmp_path / "left" / "civil.key").rename(pki / "civil.key")
    r = _pki("add", "--pki", str(pki), "--agency", "civil", "--csr", str(own / "civil.csr"),
             env=keeper)
    assert r.returncode == 0, r.stderr
    assert not (pki / "civil.key").exists() and (pki / "civil.crt").exists()
    for name in ("ca.crt", "crl.pem", "civil.crt"):
        shutil.copyfile(pki / name, own / name)
    lock(unlock(own, "civil", b"civil-pw"))  # the agency's key is the certificate's


def test_an_agency_id_with_a_hyphen_renews_its_own_key_again_and_sha2_requests_are_taken(
        tmp_path: Path) -> None:
    """`_refuse_taken_key` reads a superseded certificate's owner from its file name
    (AGENCY-SERIAL.crt) up to its last '-' (helper round 39M: no test had an id with a
    '-'): an agency whose id has one renews with its own request again and again, and an
    agency whose id is its start ("city" of "city-water") gets no certificate for the key of
    the other's superseded one. Requests hashed with any SHA-2 the library signs with are
    taken (only SHA-1 and the like are refused)."""
    from node.pki import _load_key, check_request

    pki, own = tmp_path / "pki", tmp_path / "own"
    create_pki(pki, "n", ["civil"], b"pw", now=NOW)
    own.mkdir()
    csr = make_request(own, "city-water", b"cw-pw").read_bytes()
    issue_agency_cert(pki, "city-water", b"pw", now=NOW, csr=csr)
    for _ in range(2):  # its superseded certificate's key is its own
        renew_agency_cert(pki, "city-water", b"pw", now=NOW, csr=csr)
    assert len(list((pki / "superseded").glob("city-water-*.crt"))) == 2
    key = _load_key(own / "city-water.key", b"cw-pw")
    (pki / "city-water.crt").rename(tmp_path / "city-water.crt")  # the superseded ones alone
    as_city = (x509.CertificateSigningRequestBuilder().subject_name(x509.Name(
        [x509.NameAttribute(NameOID.COMMON_NAME, "city")])).sign(key, hashes.SHA256())
               ).public_bytes(serialization.Encoding.PEM)
    with pytest.raises(PkiError, match="the key of city-water's certificate"):
        issue_agency_cert(pki, "city", b"pw", now=NOW, csr=as_city)
    assert not (pki / "city.crt").exists()
    for hashed in (hashes.SHA224(), hashes.SHA384(), hashes.SHA512()):
        other = ec.generate_private_key(ec.SECP256R1())
        pem = (x509.CertificateSigningRequestBuilder().subject_name(x509.Name(
            [x509.NameAttribute(NameOID.COMMON_NAME, "market")])).sign(other, hashed)
               ).public_bytes(serialization.Encoding.PEM)
        assert check_request(pem, "market") == other.public_key(), hashed.name


def test_pki_certifies_no_key_twice_and_renews_an_agencys_own_key_only_by_its_request(
        tmp_path: Path) -> None:
    """Round 38K's two design questions, decided (ADR 81): a request for a key that is already
    another's certificate's (another agency's, current or superseded, or the CA's) is not
    certified by `add --csr` or `renew --csr`: each agency's key is its own. And `renew`
    without --csr, for an agency that keeps its own key (no key at the keeper's), is refused:
    it made a new key at the keeper's that the agency's node does not open. Each refusal
    writes nothing; the agency's own request still renews it."""
    pki, own = tmp_path / "pki", tmp_path / "edu-pki"
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEDGER_")}
    keeper = {**env, "LEDGER_KEY_PASSPHRASE": "pw"}
    assert _pki("create", "--out", str(pki), "--network", "district-7", "--agency", "civil",
                env=keeper).returncode == 0
    assert _pki("request", "--agency", "edu", "--out", str(own),
                env={**env, "LEDGER_KEY_PASSPHRASE": "edu-pw"}).returncode == 0
    assert _pki("add", "--pki", str(pki), "--agency", "edu", "--csr", str(own / "edu.csr"),
                env=keeper).returncode == 0

    def request_of(agency: str, key: Path, passphrase: bytes) -> Path:
        """A request naming ``agency`` signed with the key in ``key``."""
        from node.pki import _load_key

        csr = (x509.CertificateSigningRequestBuilder().subject_name(x509.Name(
            [x509.NameAttribute(NameOID.COMMON_NAME, agency)])).sign(
                _load_key(key, passphrase), hashes.SHA256()))
        path = tmp_path / f"{agency}-{key.stem}.csr"
        path.write_bytes(csr.public_bytes(serialization.Encoding.PEM))
        return path

    everything = {p: p.read_bytes() for p in pki.rglob("*") if p.is_file()}
    for args, said in (
            # edu's own key in a request naming market, and civil's (the keeper made it)
            (["add", "--agency", "market", "--csr",
              str(request_of("market", own / "edu.key", b"edu-pw"))],
             "the key of edu's certificate (edu.crt)"),
            (["add", "--agency", "market", "--csr",
              str(request_of("market", pki / "civil.key", b"pw"))],
             "the key of civil's certificate (civil.crt)"),
            (["renew", "--agency", "civil", "--csr",
              str(request_of("civil", own / "edu.key", b"edu-pw"))],
             "the key of edu's certificate (edu.crt)"),
            (["add", "--agency", "market", "--csr",
              str(request_of("market", pki / "ca.key", b"pw"))],
             "the key of the CA's certificate (ca.crt)"),
            # edu keeps its own key: renew without --csr would make one at the keeper's
            (["renew", "--agency", "edu"], "edu keeps its own TLS key")):
        r = _pki(*args[:1], "--pki", str(pki), *args[1:], env=keeper)
        said_ = " ".join(r.stderr.split())
        assert r.returncode == 1 and said in said_, (args, said_)
        assert "Traceback" not in said_
        assert {p: p.read_bytes() for p in pki.rglob("*") if p.is_file()} == everything
    # its own request renews it; then its superseded certificate's key is still its own
    for _ in range(2):
        r = _pki("renew", "--pki", str(pki), "--agency", "edu", "--csr", str(own / "edu.csr"),
                 env=keeper)
        assert r.returncode == 0, r.stderr
    r = _pki("add", "--pki", str(pki), "--agency", "market", "--csr",
             str(request_of("market", own / "edu.key", b"edu-pw")), env=keeper)
    assert r.returncode == 1 and "the key of edu's certificate" in " ".join(r.stderr.split())
    (pki / "edu.crt").rename(tmp_path / "edu.crt")  # only the superseded ones name it now
    r = _pki("add", "--pki", str(pki), "--agency", "market", "--csr",
             str(request_of("market", own / "edu.key", b"edu-pw")), env=keeper)
    assert r.returncode == 1 and "the key of edu's certificate (edu-" in " ".join(
        r.stderr.split()), r.stderr
