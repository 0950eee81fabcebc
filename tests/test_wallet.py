"""The citizen wallet: encrypted file, receive checks, selective presentation, backup, CLI."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import re
import stat
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import segno
from conftest import DAY, T0, LedgerHarness

from ledger import codec, sdjwt
from ledger.checkpoint import SignedCheckpoint
from ledger.credentials import issue_credential, issuer_uri, status_list, status_list_uri
from ledger.errors import LedgerError
from ledger.finality import sign_checkpoint
from ledger.keys import PrivateKey
from ledger.network import Agency
from ledger.presentation import Bundle, Envelope, Report, Request, verify_envelope
from ledger.statuslist import StatusList
from ledger.tx import make_tx
from wallet import (
    BundleRefused,
    PresentationError,
    Wallet,
    WalletError,
    WalletFileError,
)
from wallet.core import beyond_rule
from wallet.errors import WalletChangedError
from wallet.store import open_sealed

PASS = b"correct horse battery staple"
DEGREE = {"id": "degree", "title": "Degree",
          "claims": {"holder_name": "string", "degree_level": "string", "field": "string",
                     "awarded_on": "date"}, "derived": {}}
CLAIMS = {"holder_name": "Li Hua-91c2", "degree_level": "master", "field": "hydrology",
          "awarded_on": "2019-07-01"}
REQ = Request("n-0123456789abcdef", "https://civil.example/verify", "degree",
              ("degree_level", "field"))
WALLET_BIN = Path(sys.executable).parent / "wallet"


class World:
    """A ledger where ``edu`` may issue degrees from ``t0``, and helpers to make bundles."""

    def __init__(self, ledger: LedgerHarness, agencies: dict[str, Agency], t0: int) -> None:
        self.ledger, self.agencies, self.t0 = ledger, agencies, t0
        reg, edu = agencies["reg"], agencies["edu"]
        ledger.govern("register_type", {"type": DEGREE}, [reg, edu], t0 + 1)
        ledger.govern("grant", {"agency": "edu", "type": "degree", "from": t0,
                                "until": t0 + 365 * DAY}, [reg, edu], t0 + 2)
        self.n = 0

    def issue(self, holder_jwk: dict[str, str], *, signers: tuple[str, ...] = ("reg", "edu"),
              at: int | None = None) -> Bundle:
        """A degree for ``holder_jwk``, issued at ``at`` (copies issued together share it),
        else a second after the one before."""
        self.n += 1
        now = self.t0 + 10 + self.n if at is None else at
        cred = issue_credential(registry=self.ledger.registry, agency="edu",
                                issuer_key=self.agencies["edu"].issuer_key, kind="degree",
                                claims=CLAIMS, holder_jwk=holder_jwk, now=now,
                                valid_for=30 * DAY)
        r = self.ledger.commit([cred.anchor], now)
        assert not r.rejected, r.rejected
        return self.bundle(cred.sd_jwt.serialize(), r.accepted[0][1], signers)

    def forged(self, holder_jwk: dict[str, str]) -> Bundle:
        """A genuine anchor by edu's issuer key over a JWT that some other key signed."""
        self.n += 1
        now = self.t0 + 10 + self.n
        edu_key = self.agencies["edu"].issuer_key
        forger = PrivateKey(hashlib.sha256(b"forger").digest())
        net = self.ledger.registry.network
        issued = sdjwt.issue_sd_jwt(
            issuer_key=forger, issuer_kid=edu_key.kid.hex(), claims=CLAIMS,
            holder_jwk=holder_jwk, vct="degree", iss=issuer_uri(net, "edu"), iat=now, nbf=now,
            exp=now + DAY, status={"status_list": {"idx": 7, "uri": status_list_uri(
                net, "edu", "degree")}})
        anchor = make_tx(net, "issue", {
            "credential_id": issued.credential_id, "issuer": "edu", "type": "degree",
            "valid_from": now, "valid_until": now + DAY, "status_index": 7, "ts": now},
            [edu_key])
        r = self.ledger.commit([anchor], now)
        assert not r.rejected, r.rejected
        return self.bundle(issued.serialize(), r.accepted[0][1], ("reg", "edu"))

    def bundle(self, sd_jwt: str, index: int, signers: tuple[str, ...]) -> Bundle:
        store = self.ledger.store
        assert store.head is not None
        cp = sign_checkpoint(self.ledger.net, store.head,
                             [(a, self.agencies[a].node_key) for a in signers])
        return Bundle(store.entry(index), index, tuple(store.inclusion_proof(
            index, store.head.log_size)), cp.to_text(), sd_jwt)

    def lists(self) -> Callable[[str], StatusList | None]:
        lst = status_list(self.ledger.store.status_entries("edu", "degree"))
        uri = status_list_uri(self.ledger.net, "edu", "degree")
        return lambda u: lst if u == uri else None

    def verify(self, env: bytes, request: Request = REQ, now: int | None = None) -> Report:
        return verify_envelope(env, request, registry=self.ledger.registry,
                               now=self.t0 + 100 if now is None else now,
                               status_lists=self.lists())


@pytest.fixture
def world(ledger: LedgerHarness, agencies: dict[str, Agency]) -> World:
    return World(ledger, agencies, T0)


@pytest.fixture
def wallet(tmp_path: Path) -> Wallet:
    return Wallet.init(tmp_path / "wallet.db", PASS)


NOW = T0 + 50


def _disclosed_names(envelope: bytes) -> list[str]:
    env = Envelope.from_bytes(envelope)
    names = []
    for d in sdjwt.parse(env.sd_jwt_kb).disclosures:
        item = json.loads(base64.urlsafe_b64decode(d + "=" * (-len(d) % 4)))
        names.append(item[1])
    return sorted(names)


# -- round trip ------------------------------------------------------------------------------


def test_a_wallet_opened_through_a_link_saves_to_the_file_it_points_to(
        world: World, wallet: Wallet, tmp_path: Path) -> None:
    link = tmp_path / "elsewhere" / "wallet.db"
    link.parent.mkdir()
    link.symlink_to(wallet.path)
    via_link = Wallet.open(link, PASS)
    info = via_link.receive(world.issue(via_link.holder_jwk()).to_bytes(),
                            registry=world.ledger.registry, now=NOW)
    assert link.is_symlink()  # still a link,
    assert [c.id for c in Wallet.open(wallet.path, PASS).list()] == [info.id]  # to the update


def test_a_wallet_is_created_through_a_link_to_a_file_not_made_yet(tmp_path: Path) -> None:
    """`wallet init` through a symbolic link to where the wallet is to be kept (another disk,
    a synced folder) makes the wallet there, as open and saves follow the link: it said "a
    wallet already exists" of the link alone, where there was none."""
    kept = tmp_path / "usb" / "wallet.db"
    kept.parent.mkdir()
    link = tmp_path / "home" / "wallet.db"
    link.parent.mkdir()
    link.symlink_to(kept)
    r = _run(["init"], link)
    assert r.returncode == 0, r.stderr
    assert link.is_symlink() and stat.S_IMODE(kept.stat().st_mode) == 0o600
    assert Wallet.open(link, PASS).holder_jwk() == json.loads(r.stdout)
    r = _run(["init"], link)  # and now one is there: never replaced
    assert r.returncode == 1 and "already exists" in r.stderr, r.stderr


def test_init_receive_list_show_present_verifies(world: World, wallet: Wallet) -> None:
    info = wallet.receive(world.issue(wallet.holder_jwk()).to_bytes(),
                          registry=world.ledger.registry, now=NOW)
    assert (info.type, info.issuer) == ("degree", "edu")
    reopened = Wallet.open(wallet.path, PASS)
    assert [c.id for c in reopened.list()] == [info.id]
    assert reopened.list()[0].state(NOW) == "valid"
    assert reopened.show(info.id[:8]) == CLAIMS

    env = reopened.present(info.id, REQ, now=T0 + 90)
    report = world.verify(env)
    assert report.verified, report.to_json()
    assert report.claims == {"degree_level": "master", "field": "hydrology"}


def test_pick_allows_the_clock_skew_receiving_and_verifying_allow(world: World,
                                                                   wallet: Wallet) -> None:
    """A holder's clock 30 s behind the issuer's: the credential is received and verified
    (60 s of skew), so ``pick`` (``wallet apply``) must offer it too; not 61 s before it starts."""
    world.n = 960  # issued well after the network's keys start
    earlier_bundle = world.issue(wallet.holder_jwk())  # 40 s before the next one
    world.n = 1000
    bundle = world.issue(wallet.holder_jwk())
    start = sdjwt.parse(bundle.sd_jwt).payload["nbf"]
    info = wallet.receive(bundle.to_bytes(), registry=world.ledger.registry, now=start - 30)
    assert wallet.pick(REQ, now=start - 30) == info.id
    with pytest.raises(PresentationError, match="no valid 'degree'"):
        wallet.pick(REQ, now=start - sdjwt.CLOCK_SKEW - 1)
    # one that has started by the holder's clock comes first: a verifier's clock may be behind
    earlier = wallet.receive(earlier_bundle.to_bytes(), registry=world.ledger.registry,
                             now=start - 30)
    assert wallet.pick(REQ, now=start - 30) == earlier.id
    assert wallet.pick(REQ, now=start) == info.id  # both started: the newest
    env = wallet.present(info.id, REQ, now=start - 30)
    assert world.verify(env, now=start - 30).verified


def test_the_wallets_dates_say_what_the_verifier_says_at_both_edges(world: World,
                                                                      wallet: Wallet) -> None:
    """`wallet list`'s dates and `wallet present`'s warning ("the verifier will refuse it")
    judged validity without the verifiers' 60 s clock skew (ADR 77's 30T item): up to 60 s
    before a credential's start, and up to 60 s past its end, the wallet said it was not
    valid, and chose another copy, where a verifier whose clock reads the same takes it. At
    each second of both edges the wallet says "valid" exactly when the verifier verifies."""
    world.n = 1000  # issued well after the network's keys start
    bundle = world.issue(wallet.holder_jwk())
    payload = sdjwt.parse(bundle.sd_jwt).payload
    start, end = payload["nbf"], payload["exp"]
    info = wallet.receive(bundle.to_bytes(), registry=world.ledger.registry, now=start)
    skew = sdjwt.CLOCK_SKEW
    for now, valid in ((start - skew - 1, False), (start - skew, True), (start - 1, True),
                       (end - 1, True), (end, True), (end + skew - 1, True),
                       (end + skew, False)):
        env = wallet.present(info.id, REQ, now=now, exact=True)
        report = world.verify(env, now=now)
        assert report.verified is valid, (now - start, now - end, report.to_json())
        said = "valid" if valid else "expired" if now > end else "not yet valid"
        assert wallet.info(info.id).state(now) == said, (now - start, now - end)
        if valid:
            assert wallet.pick(REQ, now=now) == info.id
        else:
            with pytest.raises(PresentationError, match="no valid 'degree'"):
                wallet.pick(REQ, now=now)


def test_the_wallets_dates_say_when_only_the_verifiers_skew_keeps_a_credential_valid(
        world: World, wallet: Wallet) -> None:
    """Since the wallet allows the verifiers' 60 s skew (helper round 36T), `wallet list` and
    `remove` said "valid" beside a "valid until" already past, and `present` said nothing of
    it, where a verifier that checks the presentation a minute later refuses it. Within the
    skew they say the dates ended (or have not started) and that verifiers allow 60 s; inside
    the dates, and outside the skew, they say what they said (helper round 37D)."""
    from wallet.cli import _dates, _ended_note

    world.n = 1000
    bundle = world.issue(wallet.holder_jwk())
    payload = sdjwt.parse(bundle.sd_jwt).payload
    start, end = payload["nbf"], payload["exp"]
    info = wallet.receive(bundle.to_bytes(), registry=world.ledger.registry, now=start)
    skew = sdjwt.CLOCK_SKEW
    for now, said in ((start - skew - 1, "not yet valid"),
                      (start - skew, f"not started: verifiers allow {skew} s"),
                      (start - 1, f"not started: verifiers allow {skew} s"),
                      (start, "valid"), (end - 1, "valid"),
                      (end, f"ended: verifiers allow {skew} s"),
                      (end + skew - 1, f"ended: verifiers allow {skew} s"),
                      (end + skew, "expired")):
        assert _dates(wallet.info(info.id), now) == said, (now - start, now - end)
        note = _ended_note(wallet.info(info.id), now)
        assert ("this credential ended" in note) is (end <= now < end + skew), (now - end, note)
        assert not note or "one that checks it later refuses it" in note, note


def test_present_discloses_only_what_is_asked(world: World, wallet: Wallet) -> None:
    info = wallet.receive(world.issue(wallet.holder_jwk()).to_bytes(),
                          registry=world.ledger.registry, now=NOW)
    for claims in [("field",), ("awarded_on", "holder_name"), ()]:
        req = replace(REQ, claims=claims)
        preview = wallet.preview(info.id, req)
        assert preview.claims == claims
        assert set(preview.withheld) == set(CLAIMS) - set(claims)
        env = wallet.present(info.id, req, now=T0 + 90)
        assert _disclosed_names(env) == sorted(claims)
        for name in set(CLAIMS) - set(claims):
            assert CLAIMS[name].encode() not in env
        report = world.verify(env, req)
        assert report.verified, report.to_json()
        assert set(report.claims) == set(claims)


def test_present_refuses_unknown_claims_and_other_types(world: World, wallet: Wallet) -> None:
    info = wallet.receive(world.issue(wallet.holder_jwk()).to_bytes(),
                          registry=world.ledger.registry, now=NOW)
    with pytest.raises(PresentationError, match="no claim named \\['birth_date'\\]"):
        wallet.present(info.id, replace(REQ, claims=("field", "birth_date")), now=T0 + 90)
    with pytest.raises(PresentationError, match="residence"):
        wallet.preview(info.id, replace(REQ, credential_type="residence"))
    with pytest.raises(PresentationError, match="no credential"):
        wallet.present("ffffffffffff", REQ, now=T0 + 90)


# -- receive refuses -------------------------------------------------------------------------


def _other_credential(world: World, w: Wallet) -> Bundle:
    mine, other = world.issue(w.holder_jwk()), world.issue(w.holder_jwk())
    return replace(other, sd_jwt=mine.sd_jwt)


def _bad_proof(world: World, w: Wallet) -> Bundle:
    b = world.issue(w.holder_jwk())
    return replace(b, proof=(bytes(32), *b.proof[1:]))


def _bad_leaf(world: World, w: Wallet) -> Bundle:
    world.issue(w.holder_jwk())
    b = world.issue(w.holder_jwk())
    return replace(b, leaf_index=b.leaf_index - 1)


def _short_quorum(world: World, w: Wallet) -> Bundle:
    return world.issue(w.holder_jwk(), signers=("edu",))


def _tampered_checkpoint(world: World, w: Wallet) -> Bundle:
    b = world.issue(w.holder_jwk())
    cp = SignedCheckpoint.from_text(b.checkpoint)
    forged = replace(cp, checkpoint=replace(cp.checkpoint, size=cp.checkpoint.size + 1))
    return replace(b, checkpoint=forged.to_text())


def _other_holder(world: World, w: Wallet) -> Bundle:
    other = PrivateKey(hashlib.sha256(b"someone else").digest())
    return world.issue(sdjwt.jwk_from_ed25519(other.public.raw))


def _forged_signature(world: World, w: Wallet) -> Bundle:
    return world.forged(w.holder_jwk())


def _flipped_signature(world: World, w: Wallet) -> Bundle:
    b = world.issue(w.holder_jwk())
    jwt, rest = b.sd_jwt.split("~", 1)
    head, payload, sig = jwt.split(".")
    sig = ("A" if sig[0] != "A" else "B") + sig[1:]
    return replace(b, sd_jwt=f"{head}.{payload}.{sig}~{rest}")


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _edu_signed(world: World, w: Wallet, *, header: dict[str, Any] | None = None,
                payload: dict[str, Any] | None = None, disclosures: tuple[str, ...] = (),
                listed: int = 0) -> Bundle:
    """A degree as edu issues it, its issuer-signed JWT signed again by edu's issuer key with
    ``header`` and ``payload`` members put in and ``disclosures`` added (the first ``listed``
    of them in its ``_sd``), anchored so."""
    world.n += 1
    now = world.t0 + 10 + world.n
    edu_key = world.agencies["edu"].issuer_key
    cred = issue_credential(registry=world.ledger.registry, agency="edu", issuer_key=edu_key,
                            kind="degree", claims=CLAIMS, holder_jwk=w.holder_jwk(), now=now,
                            valid_for=30 * DAY)
    jwt = cred.sd_jwt.issuer_jwt
    head = {**sdjwt.parse_jws_header(jwt), **(header or {})}
    body = {**sdjwt.parse_jws_payload(jwt), **(payload or {})}
    body["_sd"] = sorted([*body["_sd"], *(_b64(hashlib.sha256(d.encode()).digest())
                                          for d in disclosures[:listed])])
    signing_input = f"{_b64(json.dumps(head).encode())}.{_b64(json.dumps(body).encode())}"
    signed = f"{signing_input}.{_b64(sdjwt.jws_sign(edu_key, signing_input.encode()))}"
    anchor = make_tx(world.ledger.registry.network, "issue", {
        **cred.anchor.body, "credential_id": hashlib.sha256(signed.encode()).digest()},
        [edu_key])
    r = world.ledger.commit([anchor], now)
    assert not r.rejected, r.rejected
    return world.bundle("~".join([signed, *cred.sd_jwt.disclosures, *disclosures]) + "~",
                        r.accepted[0][1], ("reg", "edu"))


def _not_typed_as_a_vc(world: World, w: Wallet) -> Bundle:
    """A degree as edu issues it, but its issuer-signed JWT signed with another '+sd-jwt'
    typ (an SD-JWT of another application, no SD-JWT VC) and anchored so."""
    return _edu_signed(world, w, header={"typ": "example+sd-jwt"})


def _a_claim_in_the_clear(world: World, w: Wallet) -> Bundle:
    """A degree whose issuer-signed JWT also carries a claim in the clear, not selectively
    disclosable: every presentation would show it, and the preview named it nowhere."""
    return _edu_signed(world, w, payload={"nationality": "Freedonia-7c41"})


def _a_claim_nested_in_another(world: World, w: Wallet) -> Bundle:
    """A degree with a disclosable claim nested inside another (``address.street``): shown
    with its parent, though the preview names the parent alone."""
    inner = _b64(json.dumps(["c2FsdC1pbm5lcg", "street", "1 Elm Row"]).encode())
    outer = _b64(json.dumps(["c2FsdC1vdXRlcg", "address", {"_sd": [
        _b64(hashlib.sha256(inner.encode()).digest())]}]).encode())
    return _edu_signed(world, w, disclosures=(outer, inner), listed=1)


def _window_not_anchored(world: World, w: Wallet, *, start: int = 0,
                         days: int = 2) -> Bundle:
    """A degree edu's key signed valid for two days but anchored valid for one: the wallet
    would list it valid until the anchor's end, and every verifier refuses it. (``start``:
    seconds its signed nbf lies before the anchor's valid_from; ``days``: its signed length.)"""
    world.n += 1
    now = world.t0 + 10 + world.n
    edu_key = world.agencies["edu"].issuer_key
    net = world.ledger.registry.network
    issued = sdjwt.issue_sd_jwt(
        issuer_key=edu_key, issuer_kid=edu_key.kid.hex(), claims=CLAIMS,
        holder_jwk=w.holder_jwk(), vct="degree", iss=issuer_uri(net, "edu"), iat=now,
        nbf=now - start, exp=now + days * DAY, status={"status_list": {
            "idx": 9, "uri": status_list_uri(net, "edu", "degree")}})
    anchor = make_tx(net, "issue", {
        "credential_id": issued.credential_id, "issuer": "edu", "type": "degree",
        "valid_from": now, "valid_until": now + DAY, "status_index": 9, "ts": now}, [edu_key])
    r = world.ledger.commit([anchor], now)
    assert not r.rejected, r.rejected
    return world.bundle(issued.serialize(), r.accepted[0][1], ("reg", "edu"))


def _start_not_anchored(world: World, w: Wallet) -> Bundle:
    """Signed valid from a minute before its anchor's valid_from, to the same end: the wallet
    would list it by the anchor's start, and a verifier checks the signed nbf against it."""
    return _window_not_anchored(world, w, start=60, days=1)


def _anchor_signature_broken(world: World, w: Wallet) -> Bundle:
    b = world.issue(w.holder_jwk())
    return replace(b, anchor=b.anchor[:-1] + bytes([b.anchor[-1] ^ 1]))


def _signed_beside_an_anchor(world: World, w: Wallet, *, claims: dict[str, str] | None = None,
                             idx: int = 9, number: int = 0) -> Bundle:
    """A degree edu's key signed with the window of its anchor, which anchors status index 9
    of list 0: with other ``claims`` (so another JWT than the anchored one), or naming status
    index ``idx`` of list ``number`` (anchored with the JWT's hash, so a verifier would read
    the status of an entry the agency does not revoke it by)."""
    world.n += 1
    now = world.t0 + 10 + world.n
    edu_key = world.agencies["edu"].issuer_key
    net = world.ledger.registry.network
    signed = {"issuer_key": edu_key, "issuer_kid": edu_key.kid.hex(),
              "holder_jwk": w.holder_jwk(), "vct": "degree", "iss": issuer_uri(net, "edu"),
              "iat": now, "nbf": now, "exp": now + DAY}
    anchored = sdjwt.issue_sd_jwt(claims=CLAIMS, status={"status_list": {
        "idx": 9, "uri": status_list_uri(net, "edu", "degree")}}, **signed)
    shown = sdjwt.issue_sd_jwt(claims=CLAIMS if claims is None else claims, status={
        "status_list": {"idx": idx, "uri": status_list_uri(net, "edu", "degree", number)}},
        **signed)
    anchor = make_tx(net, "issue", {
        "credential_id": (anchored if claims is not None else shown).credential_id,
        "issuer": "edu", "type": "degree", "valid_from": now, "valid_until": now + DAY,
        "status_index": 9, "ts": now}, [edu_key])
    r = world.ledger.commit([anchor], now)
    assert not r.rejected, r.rejected
    return world.bundle(shown.serialize(), r.accepted[0][1], ("reg", "edu"))


def _not_the_anchored_jwt(world: World, w: Wallet) -> Bundle:
    return _signed_beside_an_anchor(world, w, claims={**CLAIMS, "degree_level": "doctor"})


def _status_index_not_anchored(world: World, w: Wallet) -> Bundle:
    return _signed_beside_an_anchor(world, w, idx=10)


def _status_list_not_anchored(world: World, w: Wallet) -> Bundle:
    return _signed_beside_an_anchor(world, w, number=1)


def _anchor_of_another_network(world: World, w: Wallet) -> Bundle:
    """The same issue, signed by the same agency key, for another network's ledger."""
    from ledger.tx import Tx

    b = world.issue(w.holder_jwk())
    body = Tx.from_bytes(b.anchor).body
    return replace(b, anchor=make_tx("another-district", "issue", body,
                                     [world.agencies["edu"].issuer_key]).raw)


def _anchor_signed_by_an_outsider(world: World, w: Wallet) -> Bundle:
    """The same issue body, whole and well formed, signed by a key the registry lacks."""
    from ledger.tx import Tx

    b = world.issue(w.holder_jwk())
    outsider = PrivateKey(hashlib.sha256(b"outsider").digest())
    return replace(b, anchor=make_tx(world.ledger.net, "issue", Tx.from_bytes(b.anchor).body,
                                     [outsider]).raw)


def _anchor_not_an_issue(world: World, w: Wallet) -> Bundle:
    """A status transaction of this network (signed by edu's key) in the anchor's place."""
    from ledger.network import status_tx

    b = world.issue(w.holder_jwk())
    cid = hashlib.sha256(b.sd_jwt.split("~", 1)[0].encode()).digest()
    return replace(b, anchor=status_tx(world.ledger.net, world.agencies["edu"], cid,
                                       "suspended", "under_review", world.t0 + 60).raw)


@pytest.mark.parametrize(("make", "step"), [
    (_anchor_of_another_network, "anchor"),
    (_anchor_not_an_issue, "anchor"),
    (_anchor_signed_by_an_outsider, "anchor"),
    (_not_the_anchored_jwt, "credential_id"),
    (_status_index_not_anchored, "credential_id"),
    (_status_list_not_anchored, "credential_id"),
    (_other_holder, "holder"),
    (_other_credential, "credential_id"),
    (_bad_proof, "inclusion"),
    (_bad_leaf, "inclusion"),
    (_short_quorum, "checkpoint"),
    (_tampered_checkpoint, "checkpoint"),
    (_forged_signature, "sd_jwt"),
    (_flipped_signature, "sd_jwt"),
    (_anchor_signature_broken, "anchor"),
    (_not_typed_as_a_vc, "sd_jwt"),
    (_a_claim_in_the_clear, "sd_jwt"),
    (_a_claim_nested_in_another, "sd_jwt"),
    (_window_not_anchored, "credential_id"),
    (_start_not_anchored, "credential_id"),
])
def test_receive_refuses(world: World, wallet: Wallet, make: Callable[[World, Wallet], Bundle],
                         step: str) -> None:
    before = wallet.path.read_bytes()
    with pytest.raises(BundleRefused) as e:
        wallet.receive(make(world, wallet).to_bytes(), registry=world.ledger.registry, now=NOW)
    assert e.value.step == step, str(e.value)
    assert wallet.list() == []
    assert wallet.path.read_bytes() == before
    assert Wallet.open(wallet.path, PASS).list() == []


def test_a_credential_bound_to_a_wallet_key_spelled_with_an_unread_member_is_kept(
        world: World, wallet: Wallet) -> None:
    """A credential whose ``cnf.jwk`` is the wallet's holder key 2 with a ``y`` member, which
    an Ed25519 key does not read: the wallet matched its keys by their members as text, took
    key 1 for it and refused the credential as bound to "another holder key" (verifiers take
    it: the key as read is the wallet's). It is kept, bound to key 2 (ADR 71)."""
    before = len(wallet.list())
    bundle = _edu_signed(world, wallet, payload={"cnf": {"jwk": {**wallet.holder_jwk(1),
                                                                 "y": "AAAA"}}})
    info = wallet.receive(bundle.to_bytes(), registry=world.ledger.registry, now=NOW)
    assert info.key == 1
    assert len(Wallet.open(wallet.path, PASS).list()) == before + 1


def test_receive_refuses_garbage_expired_and_duplicates(world: World, wallet: Wallet) -> None:
    reg = world.ledger.registry
    with pytest.raises(BundleRefused) as e:
        wallet.receive(b"\x92\x01", registry=reg, now=NOW)
    assert e.value.step == "bundle"
    bundle = world.issue(wallet.holder_jwk()).to_bytes()
    with pytest.raises(BundleRefused) as e:
        wallet.receive(bundle, registry=reg, now=T0 + 31 * DAY)
    assert e.value.step == "sd_jwt"
    wallet.receive(bundle, registry=reg, now=NOW)
    with pytest.raises(WalletError, match="already in the wallet"):
        wallet.receive(bundle, registry=reg, now=NOW)
    assert len(Wallet.open(wallet.path, PASS).list()) == 1


def test_an_envelope_too_big_for_one_qr_code_says_so() -> None:
    from wallet.qr import b64url, make_qr

    assert not make_qr(b"\x01" * 1000).is_micro
    with pytest.raises(WalletError, match="does not fit one QR code"):
        make_qr(os.urandom(2954))  # over version 40-L's 2,953 bytes
    assert make_qr(os.urandom(2900)).version == 40
    assert b64url(b"\xfb\xff") == "-_8"



def test_an_envelope_too_big_for_a_qr_code_names_its_checkpoints_share(
        world: World, wallet: Wallet) -> None:
    """On a network of ten agencies or more the checkpoint's co-signatures alone outgrow one
    code: the refusal says so, since disclosing fewer claims would not help (ADR 48)."""
    from ledger.presentation import Envelope
    from wallet.qr import make_qr

    info = wallet.receive(world.issue(wallet.holder_jwk()).to_bytes(),
                          registry=world.ledger.registry, now=NOW)
    env = Envelope.from_bytes(wallet.present(info.id, REQ, now=NOW))
    lines = "".join(f"\u2014 agency-{i:02d} {base64.b64encode(os.urandom(68)).decode()}\n"
                    for i in range(30))
    big = replace(env, checkpoint=env.checkpoint + lines).to_bytes()
    text = Envelope.from_bytes(big).checkpoint
    count = len(SignedCheckpoint.from_text(text).signatures)
    assert count >= 30 and len(text.encode()) > len(text)  # (em dashes: bytes, not characters)
    with pytest.raises(WalletError, match=re.escape(
            f"of which {len(text.encode()):,} the checkpoint with {count} co-signatures) "
            "does not fit one QR code")):
        make_qr(big)


def test_a_small_envelope_gets_a_full_qr_code_with_its_room_spent_on_correction() -> None:
    """However short the bytes, the code is a full QR code (not a Micro QR code, which phone
    readers do not all read), and room the version has to spare goes to error correction."""
    from wallet.qr import make_qr

    code = make_qr(b"\x01" * 10)
    assert not code.is_micro
    assert (code.version, code.error) == (1, "Q")


def test_a_qr_code_is_drawn_in_half_blocks_where_the_terminal_shows_them() -> None:
    """Half blocks on a UTF-8 stream or one that names no encoding; colour escapes on one that
    cannot show them (an escaped block would not scan)."""
    from wallet.qr import make_qr, print_qr

    code = make_qr(b"\x01" * 10)
    for stream in (io.StringIO(), io.TextIOWrapper(io.BytesIO(), encoding="utf-8")):
        print_qr(code, stream)
        stream.flush()
        drawn = stream.getvalue() if isinstance(stream, io.StringIO) \
            else stream.buffer.getvalue().decode()
        assert any(c in drawn for c in "\u2580\u2584\u2588") and "\x1b[" not in drawn
    ascii_out = io.TextIOWrapper(io.BytesIO(), encoding="ascii")
    print_qr(code, ascii_out)
    ascii_out.flush()
    drawn = ascii_out.buffer.getvalue().decode("ascii")
    assert "\x1b[" in drawn and not any(c in drawn for c in "\u2580\u2584\u2588")


def test_refusal_is_a_ledger_error() -> None:
    import wallet as pkg

    assert set(pkg.__all__) == {"BundleRefused", "CredentialInfo", "Disclosure",
                                "PresentationError", "Wallet", "WalletError",
                                "WalletFileError"}
    for cls in (BundleRefused, PresentationError, WalletFileError):
        assert issubclass(cls, WalletError)
    assert issubclass(WalletError, LedgerError)


# -- the file ----------------------------------------------------------------------------------


def test_wallet_file_reveals_nothing(world: World, wallet: Wallet) -> None:
    bundle = world.issue(wallet.holder_jwk())
    wallet.receive(bundle.to_bytes(), registry=world.ledger.registry, now=NOW)
    data = wallet.path.read_bytes()
    contents, _, _ = open_sealed(data, PASS)
    # Needles are 4 bytes or longer, so random ciphertext does not hit one by chance.
    secrets = [v.encode() for v in CLAIMS.values()] + [
        contents.holder_seed, contents.holder_seed.hex().encode(), b"\xa3edu", b"Education",
        b"degree", bundle.sd_jwt.split(".")[0].encode(), bundle.sd_jwt.split("~")[1].encode(),
        bundle.anchor[:32], bundle.checkpoint.encode()[:20]]
    for s in secrets:
        assert s not in data, s
    for marker in (b'{"kty"', b'{"alg"', b'"_sd"', b"eyJhbGci", b"holder_seed",
                   b"credentials", b"demo\n"):
        assert marker not in data
    assert stat.S_IMODE(wallet.path.stat().st_mode) == 0o600
    assert [p.name for p in wallet.path.parent.iterdir() if p.name.endswith(".tmp")] == []


def test_init_refuses_to_overwrite(wallet: Wallet) -> None:
    before = wallet.path.read_bytes()
    with pytest.raises(WalletFileError, match="already exists"):
        Wallet.init(wallet.path, b"another passphrase")
    assert wallet.path.read_bytes() == before


def test_wrong_passphrase(wallet: Wallet) -> None:
    with pytest.raises(WalletFileError, match="wrong passphrase"):
        Wallet.open(wallet.path, b"not it")
    with pytest.raises(WalletFileError, match="no wallet file"):
        Wallet.open(wallet.path.with_name("missing.db"), PASS)


def test_a_file_from_a_newer_version_is_named_as_such(wallet: Wallet) -> None:
    from ledger import codec

    header = codec.decode(wallet.path.read_bytes())
    newer = codec.encode({**header, "v": 2})
    wallet.path.write_bytes(newer)
    with pytest.raises(WalletFileError, match="written by a newer version"):
        Wallet.open(wallet.path, PASS)
    assert wallet.path.read_bytes() == newer  # left as it is


def test_a_header_cannot_demand_more_key_stretching_than_the_strongest_preset(
        wallet: Wallet) -> None:
    from ledger import codec

    header = codec.decode(wallet.path.read_bytes())
    wallet.path.write_bytes(codec.encode({**header, "ops": 256}))
    with pytest.raises(WalletFileError, match="damaged"):  # refused before any key derivation
        Wallet.open(wallet.path, PASS)


@pytest.mark.parametrize("where", ["box_end", "box_middle", "salt", "truncate", "append"])
def test_tampered_wallet_file(world: World, wallet: Wallet, where: str) -> None:
    wallet.receive(world.issue(wallet.holder_jwk()).to_bytes(),
                   registry=world.ledger.registry, now=NOW)
    data = bytearray(wallet.path.read_bytes())
    if where == "box_end":
        data[-1] ^= 0x01
    elif where == "box_middle":
        data[len(data) // 2] ^= 0x80
    elif where == "salt":
        i = data.rindex(b"salt") + len(b"salt") + 2  # after the key and the bin8 header
        data[i] ^= 0x01
    elif where == "truncate":
        del data[-10:]
    else:
        data += b"\x00"
    wallet.path.write_bytes(bytes(data))
    with pytest.raises(WalletFileError):
        Wallet.open(wallet.path, PASS)


def test_a_wallet_opened_before_another_process_saved_keeps_both_credentials(
        world: World, wallet: Wallet) -> None:
    """Two `wallet receive` runs on one wallet: the later save takes in the earlier one's
    under the wallet's lock instead of refusing it (ADR 68); neither credential is lost."""
    other, late = Wallet.open(wallet.path, PASS), Wallet.open(wallet.path, PASS)
    reg = world.ledger.registry
    bundle = world.issue(wallet.holder_jwk()).to_bytes()
    first = wallet.receive(bundle, registry=reg, now=NOW)
    second = other.receive(world.issue(wallet.holder_jwk()).to_bytes(), registry=reg, now=NOW)
    assert [c.id for c in Wallet.open(wallet.path, PASS).list()] == [first.id, second.id]
    assert [c.id for c in other.list()] == [first.id, second.id]
    # one another process kept since this one opened the wallet is there already: not twice
    with pytest.raises(WalletError, match="already in the wallet"):
        late.receive(bundle, registry=reg, now=NOW)
    assert len(Wallet.open(wallet.path, PASS).list()) == 2


def test_a_stale_wallet_does_not_overwrite_a_newer_file(world: World, wallet: Wallet) -> None:
    """A save that does not take in the file first (every save does since ADR 74; the guard
    stays) is refused once another process saved since this one opened the wallet: nothing it
    did not read is overwritten."""
    other = Wallet.open(wallet.path, PASS)
    reg = world.ledger.registry
    wallet.receive(world.issue(wallet.holder_jwk()).to_bytes(), registry=reg, now=NOW)
    before = wallet.path.read_bytes()
    with pytest.raises(WalletChangedError, match="changed since it was opened"):
        other._save(other._contents)
    assert wallet.path.read_bytes() == before


def test_a_credential_for_a_wallet_replaced_meanwhile_is_refused(
        world: World, wallet: Wallet, tmp_path: Path) -> None:
    """The credential was checked against the holder keys of the wallet that was opened: if
    another wallet was restored in its place meanwhile, it is not added to that one."""
    reg = world.ledger.registry
    bundle = world.issue(wallet.holder_jwk()).to_bytes()
    new = Wallet.init(tmp_path / "new.db", PASS)  # another wallet, the same passphrase
    new.backup(tmp_path / "new.backup")
    Wallet.restore(tmp_path / "new.backup", wallet.path, PASS)
    before = wallet.path.read_bytes()
    with pytest.raises(WalletChangedError, match="no longer opens with its key"):
        wallet.receive(bundle, registry=reg, now=NOW)
    assert wallet.path.read_bytes() == before
    assert Wallet.open(wallet.path, PASS).list() == []


def test_a_wallet_on_a_read_only_file_system_can_still_be_backed_up(
        wallet: Wallet, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No lock file can be made on a read-only file system, and nothing can change the wallet
    there either: a backup goes on without the lock; a change is still refused (ADR 47)."""
    import errno

    from wallet import store

    real_open = os.open

    def read_only(path: object, *args: int, **kwargs: int) -> int:
        if str(path).endswith(".lock"):
            raise OSError(errno.EROFS, "Read-only file system", str(path))
        return real_open(path, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(store.os, "open", read_only)
    wallet.backup(tmp_path / "copy.db")
    assert (tmp_path / "copy.db").read_bytes() == wallet.path.read_bytes()
    with pytest.raises(OSError, match="Read-only"), store.lock(wallet.path):
        pass


def test_a_wallet_made_read_only_stays_so_and_unchanged(world: World, wallet: Wallet,
                                                        tmp_path: Path) -> None:
    """A wallet file its owner made read-only (chmod 0400) came back 0600 and changed after a
    `receive`: the new file is renamed over it, which the folder allows. A change is refused,
    naming the file and the chmod; a presentation goes on uncounted, as on read-only media;
    a restore over it is refused too."""
    reg = world.ledger.registry
    first = _got(world, wallet, wallet.holder_jwk())
    wallet.backup(tmp_path / "b.db")
    wallet.path.chmod(0o400)
    before = wallet.path.read_bytes()
    with pytest.raises(WalletFileError, match=r"read-only \(mode 0400\).*chmod u\+w"):
        wallet.receive(world.issue(wallet.holder_jwk()).to_bytes(), registry=reg, now=NOW)
    with pytest.raises(WalletFileError, match="read-only"):
        wallet.remove([first])
    env = wallet.present(first, REQ, now=T0 + 90)
    assert env and wallet.uncounted and "read-only" in wallet.uncounted
    with pytest.raises(WalletFileError, match="read-only"):
        Wallet.restore(tmp_path / "b.db", wallet.path, PASS)
    assert wallet.path.read_bytes() == before
    assert stat.S_IMODE(wallet.path.stat().st_mode) == 0o400
    wallet.path.chmod(0o600)  # made writable again, it changes as before
    wallet.receive(world.issue(wallet.holder_jwk()).to_bytes(), registry=reg, now=NOW)
    assert len(Wallet.open(wallet.path, PASS).list()) == 2


def test_backup_and_restore(world: World, wallet: Wallet, tmp_path: Path) -> None:
    reg = world.ledger.registry
    first = wallet.receive(world.issue(wallet.holder_jwk()).to_bytes(), registry=reg, now=NOW)
    copy = tmp_path / "backup.db"
    wallet.backup(copy)
    assert copy.read_bytes() == wallet.path.read_bytes()
    assert stat.S_IMODE(copy.stat().st_mode) == 0o600
    with pytest.raises(WalletFileError, match="not overwriting"):
        wallet.backup(copy)

    wallet.receive(world.issue(wallet.holder_jwk()).to_bytes(), registry=reg, now=NOW)
    assert len(wallet.list()) == 2
    with pytest.raises(WalletFileError, match="wrong passphrase"):
        Wallet.restore(copy, wallet.path, b"not it")
    assert len(Wallet.open(wallet.path, PASS).list()) == 2

    newer = wallet.path.read_bytes()
    restored = Wallet.restore(copy, wallet.path, PASS)
    assert [c.id for c in restored.list()] == [first.id]
    # the wallet it replaced (two credentials) is kept, encrypted, beside it: nothing is lost
    assert restored.replaced is not None and restored.replaced.parent == wallet.path.parent
    assert restored.replaced.name.startswith(f"{wallet.path.name}.replaced-")
    assert restored.replaced.read_bytes() == newer
    assert stat.S_IMODE(restored.replaced.stat().st_mode) == 0o600
    assert len(Wallet.open(restored.replaced, PASS).list()) == 2
    # restoring the same backup again keeps nothing more: the file there is the backup
    assert Wallet.restore(copy, wallet.path, PASS).replaced is None
    assert Wallet.restore(copy, wallet.path, PASS).replaced is None
    again = Wallet.open(wallet.path, PASS)
    assert again.holder_jwk() == wallet.holder_jwk()
    assert world.verify(again.present(first.id, REQ, now=T0 + 90)).verified


def test_restore_onto_a_lost_wallet(world: World, wallet: Wallet, tmp_path: Path) -> None:
    copy = tmp_path / "backup.db"
    wallet.backup(copy)
    wallet.path.unlink()
    restored = Wallet.restore(copy, wallet.path, PASS)
    assert restored.holder_jwk() == wallet.holder_jwk() and restored.replaced is None
    bad = tmp_path / "bad.db"
    bad.write_bytes(b"not a wallet")
    with pytest.raises(WalletFileError, match="not a wallet file"):
        Wallet.restore(bad, wallet.path, PASS)


# -- the command line --------------------------------------------------------------------------


def _run(args: list[str], wallet_path: Path, *, passphrase: str = PASS.decode(),
         cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("WALLET_PATH", "WALLET_PASSPHRASE")}
    env |= {"WALLET_PASSPHRASE": passphrase, "COLUMNS": "200", "NO_COLOR": "1"}
    return subprocess.run([str(WALLET_BIN), "--wallet", str(wallet_path), *args],
                          capture_output=True, text=True, env=env, cwd=cwd, timeout=120,
                          stdin=subprocess.DEVNULL, check=False)


def _cli_wallet_holding_one(world: World, tmp_path: Path) -> tuple[Path, str]:
    """A wallet made and given one credential through the real CLI: its path and the id."""
    w = tmp_path / "wallet.db"
    r = _run(["init"], w)
    assert r.returncode == 0, r.stderr
    bundle, registry = tmp_path / "b.bundle", tmp_path / "reg.bin"
    bundle.write_bytes(world.issue(json.loads(r.stdout)).to_bytes())
    registry.write_bytes(world.ledger.registry.to_bytes())
    got = _run(["receive", str(bundle), "--registry", str(registry)], w)
    assert got.returncode == 0, got.stderr
    return w, got.stdout.strip()


@pytest.fixture
def live_world(tmp_path: Path, agencies: dict[str, Agency]) -> Iterator[World]:
    """The CLI reads the clock, so this ledger's times are just behind it."""
    start = int(time.time()) - 600
    harness = LedgerHarness(tmp_path / "live", list(agencies.values()), 2, start)
    try:
        yield World(harness, agencies, start)
    finally:
        harness.close()


def test_cli_init_receive_list_show_present(live_world: World, tmp_path: Path) -> None:
    w = tmp_path / "home" / "wallet.db"
    r = _run(["init"], w)
    assert r.returncode == 0, r.stderr
    holder = json.loads(r.stdout)
    assert holder["kty"] == "OKP"
    assert _run(["init"], w).returncode == 1

    bundle = tmp_path / "degree.bundle"
    bundle.write_bytes(live_world.issue(holder).to_bytes())
    registry = tmp_path / "registry.bin"
    registry.write_bytes(live_world.ledger.registry.to_bytes())
    r = _run(["receive", str(bundle), "--registry", str(registry)], w)
    assert r.returncode == 0, r.stderr
    cid = r.stdout.strip()
    assert len(cid) == 64

    r = _run(["list"], w)
    assert r.returncode == 0, r.stderr
    assert cid[:16] in r.stdout and "degree" in r.stdout
    assert "key" in r.stdout and "shown" in r.stdout  # the key it is bound to, from 1
    for value in CLAIMS.values():
        assert value not in r.stdout + r.stderr

    r = _run(["show", cid[:10]], w)
    assert r.returncode == 0, r.stderr
    assert "hydrology" in r.stdout and "Li Hua-91c2" in r.stdout
    for bad, said in ((cid[:3], "at least 6 hex digits"),
                      ("ffffff0000", "no credential with id 'ffffff0000'")):
        r = _run(["show", bad], w)  # bad input: exit 2, as every tool's --help says
        assert r.returncode == 2 and said in r.stderr, (r.returncode, r.stderr)

    request = tmp_path / "request.json"
    request.write_text(json.dumps(REQ.to_json()))
    out = tmp_path / "out" / "env.bin"
    out.parent.mkdir()
    r = _run(["present", cid[:10], "--request", str(request), "--out", str(out), "--yes"], w)
    assert r.returncode == 0, r.stderr
    assert "degree_level, field" in r.stderr
    assert "holder_name" in r.stderr  # named as withheld ...
    for value in CLAIMS.values():  # ... but no value is printed
        assert value not in r.stderr
    env = out.read_bytes()
    text = r.stdout.strip().splitlines()[-1]
    assert base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)) == env
    report = live_world.verify(env, now=int(time.time()))
    assert report.verified, report.to_json()
    assert report.claims == {"degree_level": "master", "field": "hydrology"}

    png = out.with_suffix(".png").read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and png[12:16] == b"IHDR"
    expected = io.BytesIO()
    segno.make_qr(env, error="l", boost_error=True).save(expected, kind="png", scale=4,
                                                         border=4)
    assert png == expected.getvalue()  # segno's image of exactly the envelope's bytes

    r = _run(["present", cid[:10], "--request", str(request), "--out", str(out), "--yes"], w)
    assert r.returncode == 2  # an earlier envelope is not replaced silently (bad input: 2)
    assert "exists" in r.stderr and "--force" in r.stderr
    assert out.read_bytes() == env
    r = _run(["present", cid[:10], "--request", str(request), "--out", str(w), "--yes",
              "--force"], w)
    assert r.returncode == 2  # never onto the wallet itself
    assert "the wallet file itself" in r.stderr
    lock = w.with_name(w.name + ".lock")
    lock.touch()  # held by another wallet command meanwhile
    r = _run(["present", cid[:10], "--request", str(request), "--out", str(lock), "--yes",
              "--force"], w)
    assert r.returncode == 2, r.stderr  # nor onto its lock
    assert "the wallet's lock file" in r.stderr and lock.read_bytes() == b""
    before = w.read_bytes()
    for path in (w, lock):  # a holder key written over the wallet lost every credential
        r = _run(["holder-key", "--out", str(path), "--force"], w)
        assert r.returncode == 2 and "choose another --out" in r.stderr, r.stderr
    assert w.read_bytes() == before and lock.read_bytes() == b""
    r = _run(["present", cid[:10], "--request", str(request), "--out", str(out), "--yes",
              "--force"], w)
    assert r.returncode == 0, r.stderr
    assert out.read_bytes() != env  # a fresh presentation (new key-binding JWT)

    r = _run(["present", cid[:10], "--request", str(request),
              "--out", str(out.with_name("other.bin"))], w)
    assert r.returncode == 1  # no terminal to confirm on, and no --yes
    assert "--yes" in r.stderr

    # A verifier's audience padded to push fake lines into the preview, with emoji codes that
    # a console would draw as pictures: shown quoted, spaces folded, codes as typed.
    tricky = tmp_path / "tricky.json"
    tricky.write_text(json.dumps({**REQ.to_json(), "audience": "desk" + " " * 300
                                  + "disclosed: nothing :lock: :white_check_mark:"}))
    r = _run(["present", cid[:10], "--request", str(tricky), "--out",
              str(out.with_name("tricky.bin")), "--yes"], w)
    assert r.returncode == 0, r.stderr
    assert "“desk disclosed: nothing :lock: :white_check_mark:”" in r.stderr
    assert "\U0001f512" not in r.stderr and "  " * 20 not in r.stderr


def test_cli_errors(live_world: World, tmp_path: Path) -> None:
    w = tmp_path / "wallet.db"
    r = _run(["list"], w)
    assert r.returncode == 1 and "no wallet file" in r.stderr
    assert _run(["init"], w).returncode == 0
    r = _run(["list"], w, passphrase="wrong")
    assert r.returncode == 1 and "wrong passphrase" in r.stderr
    other = sdjwt.jwk_from_ed25519(PrivateKey(bytes(32)).public.raw)
    bundle = tmp_path / "b"
    bundle.write_bytes(live_world.issue(other).to_bytes())
    registry = tmp_path / "r"
    registry.write_bytes(live_world.ledger.registry.to_bytes())
    r = _run(["receive", str(bundle), "--registry", str(registry)], w)
    assert r.returncode == 1 and "holder" in r.stderr
    r = _run(["receive", str(bundle), "--registry", str(bundle)], w)
    assert r.returncode == 1 and "nor a registry" in r.stderr
    r = _run(["receive", str(bundle)], w)  # neither --registry nor --trust: a usage error
    assert r.returncode == 2 and "exactly one of --registry" in r.stderr
    r = _run(["present", "abcdef", "--request", str(registry), "--yes"], w)
    assert r.returncode == 2 and "is not a verifier's request" in r.stderr  # bad input
    # read strictly, as `ledger verify` reads the same file (second review, ADR 55)
    twice = tmp_path / "twice.json"
    text = json.dumps(REQ.to_json())
    twice.write_text(text[:-1] + ', "nonce": "another"}')
    r = _run(["present", "abcdef", "--request", str(twice), "--yes"], w)
    assert r.returncode == 2 and "duplicate member name 'nonce'" in r.stderr, r.stderr
    # nested thousands deep: as bad input as any, not a failure (exit 1)
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 100_000 + "]" * 100_000)
    r = _run(["present", "abcdef", "--request", str(deep), "--yes"], w)
    assert r.returncode == 2 and "nested too deeply" in r.stderr, r.stderr
    # an input file that cannot be read as one is bad input (exit 2), as `ledger` says of its
    # own (it was exit 1, a failure: round 43D; a folder is refused by the option's check)
    huge = tmp_path / "huge.bin"  # sparse, over the 64 MiB any input file may be
    with huge.open("wb") as f:
        f.truncate(64 * 1024 * 1024 + 1)
    before = w.read_bytes()
    for args, said in (
            (["receive", str(tmp_path / "missing.bundle"), "--registry", str(registry)],
             "cannot read the bundle"),
            (["receive", str(huge), "--registry", str(registry)], "is over 67,108,864 bytes"),
            (["present", "abcdef", "--request", str(tmp_path / "missing.json"), "--yes"],
             "cannot read the request"),
            (["restore", str(tmp_path / "missing.backup"), "--yes"], "cannot read the backup")):
        r = _run(args, w)
        assert r.returncode == 2 and said in r.stderr, (args, r.returncode, r.stderr)
    assert w.read_bytes() == before
    r = _run(["--help"], w)
    assert r.returncode == 0 and "present" in r.stdout and "WALLET_PASSPHRASE" in r.stdout
    assert _run(["frobnicate"], w).returncode == 2
    # a file where the wallet's folder should be
    claims = tmp_path / "claims.json"
    claims.write_text("{}")
    r = _run(["init"], claims / "w.db")
    assert r.returncode == 1 and "a file is in the way" in r.stderr
    assert claims.read_text() == "{}"


def test_cli_wallet_path_from_environment(tmp_path: Path) -> None:
    w = tmp_path / "env-wallet.db"
    env = {k: v for k, v in os.environ.items() if k != "WALLET_PASSPHRASE"}
    env |= {"WALLET_PASSPHRASE": "pw", "WALLET_PATH": str(w)}
    r = subprocess.run([str(WALLET_BIN), "init"], capture_output=True, text=True, env=env,
                       stdin=subprocess.DEVNULL, timeout=120, check=False)
    assert r.returncode == 0, r.stderr
    assert Wallet.open(w, b"pw").list() == []


def test_cli_backup_to_a_folder_it_cannot_write_or_that_is_missing(tmp_path: Path) -> None:
    """One rule for outputs: a folder that does not exist, or a file already there, is bad
    input (2); a folder that cannot be written is a failure (1). Nothing is written."""
    from test_audit import _make_read_only

    w = tmp_path / "wallet.db"
    assert _run(["init"], w).returncode == 0
    r = _run(["backup", str(tmp_path / "no-such-folder" / "copy.db")], w)
    assert r.returncode == 2 and "there is no folder" in r.stderr, (r.returncode, r.stderr)
    r = _run(["backup", str(w)], w)
    assert r.returncode == 2 and "exists" in r.stderr, (r.returncode, r.stderr)
    ro = tmp_path / "ro"
    ro.mkdir()
    undo = _make_read_only([ro])
    try:
        r = _run(["backup", str(ro / "copy.db")], w)
    finally:
        subprocess.run(undo, check=True)
    assert r.returncode == 1 and f"cannot write {ro / 'copy.db'}" in r.stderr, r.stderr
    assert list(ro.iterdir()) == []


def test_cli_backup_restore(tmp_path: Path) -> None:
    w = tmp_path / "wallet.db"
    assert _run(["init"], w).returncode == 0
    copy = tmp_path / "copy.db"
    r = _run(["backup", str(copy)], w)
    assert r.returncode == 0, r.stderr
    assert copy.read_bytes() == w.read_bytes()
    key = _run(["holder-key"], w).stdout  # the next key the backed-up wallet gives out
    r = _run(["restore", str(copy)], w, passphrase="wrong")
    assert r.returncode == 1 and "wrong passphrase" in r.stderr
    r = _run(["restore", str(copy)], w)
    assert r.returncode == 1 and "--yes" in r.stderr  # would replace a wallet: asks first
    w.unlink()
    r = _run(["restore", str(copy)], w)
    assert r.returncode == 0, r.stderr
    assert _run(["holder-key"], w).stdout == key
    # over another wallet: that one is kept beside it, and the CLI says where
    w.unlink()
    assert _run(["init"], w).returncode == 0
    other = w.read_bytes()
    r = _run(["restore", str(copy), "--yes"], w)
    assert r.returncode == 0, r.stderr
    kept = list(tmp_path.glob("wallet.db.replaced-*"))
    assert len(kept) == 1 and kept[0].read_bytes() == other
    assert str(kept[0]) in " ".join(r.stderr.split())



def test_cli_restore_names_why_the_wallet_it_replaces_cannot_be_read(tmp_path: Path) -> None:
    """Over a wallet file that a newer credledger wrote, the note said it "does not open with
    this passphrase": the citizen retried passphrases for a file that only an upgrade reads."""
    w = tmp_path / "wallet.db"
    assert _run(["init"], w).returncode == 0
    copy = tmp_path / "copy.db"
    assert _run(["backup", str(copy)], w).returncode == 0
    w.write_bytes(codec.encode({"v": 2, "kind": "credledger-wallet", "box": b"x"}))
    r = _run(["restore", str(copy), "--yes"], w)
    assert r.returncode == 0, r.stderr
    said = " ".join(r.stderr.split())
    assert "newer version" in said and "does not open with this passphrase" not in said, said
    assert PASS.decode() not in said


def test_cli_takes_a_passphrase_that_is_not_utf8(tmp_path: Path) -> None:
    w = tmp_path / "w.db"
    odd = "p\udcffass"  # the byte 0xff, as Python sees it in the environment
    r = _run(["init"], w, passphrase=odd)
    assert r.returncode == 0, r.stderr
    assert _run(["list"], w, passphrase=odd).returncode == 0
    wrong = _run(["list"], w, passphrase="p\udcfeass")
    assert wrong.returncode == 1
    assert "Traceback" not in wrong.stderr and "wrong passphrase" in wrong.stderr


def test_a_wallet_too_big_to_open_again_is_not_saved(world: World, wallet: Wallet,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """The sealed file, ~110 bytes over its contents, must also fit the limit an open checks."""
    from wallet import core as wallet_core

    before = wallet.path.read_bytes()
    monkeypatch.setattr(wallet_core, "MAX_FILE", len(before) + 50)  # room for the contents only
    with pytest.raises(WalletError, match="not saved: the wallet would be"):
        wallet.receive(world.issue(wallet.holder_jwk()).to_bytes(),
                       registry=world.ledger.registry, now=NOW)
    assert wallet.path.read_bytes() == before


def test_beyond_rule_allows_what_the_rule_needs_and_the_claims_its_types_imply() -> None:
    """`wallet apply` signs nothing for a request asking beyond the registered rule (ADR 45);
    a rule needing an approval credential implies its service, decision and approval_tx
    (ADR 41), which the node's request carries and the wallet must let through."""
    rule = {"needs": [{"type": "approval", "claims": ["service"]},
                      {"type": "person-id", "claims": ["district"]}]}

    def ask(credential_type: str, *claims: str) -> Request:
        return Request("n", "https://civil.example", credential_type, claims)

    assert beyond_rule(rule, ask("approval", "service", "decision", "approval_tx")) == []
    assert beyond_rule(rule, ask("person-id", "district")) == []
    assert beyond_rule(rule, ask("person-id", "district", "decision")) == ["decision"]
    assert beyond_rule(rule, ask("approval", "service", "holder_name")) == ["holder_name"]
    assert beyond_rule(rule, ask("degree", "field")) is None


def test_cli_restore_names_what_the_backup_lacks(world: World, wallet: Wallet,
                                                 tmp_path: Path) -> None:
    """A credential received after the backup was made is named before the restore replaces
    the wallet (it used to say only the count after), and stays in the copy kept aside."""
    reg = world.ledger.registry
    first = wallet.receive(world.issue(wallet.holder_jwk()).to_bytes(), registry=reg, now=NOW)
    copy = tmp_path / "backup.db"
    wallet.backup(copy)
    later = wallet.receive(world.issue(wallet.holder_jwk()).to_bytes(), registry=reg, now=NOW)
    r = _run(["restore", str(copy)], wallet.path)  # no --yes: it names them, then asks
    said = " ".join(r.stderr.split())
    assert r.returncode == 1 and "--yes" in said, said
    assert "The backup lacks 1 credential this wallet holds" in said
    assert later.id[:16] in said and first.id[:16] not in said
    assert len(Wallet.open(wallet.path, PASS).list()) == 2  # nothing replaced yet
    r = _run(["restore", str(copy), "--yes"], wallet.path)
    assert r.returncode == 0 and later.id[:16] in r.stderr, r.stderr
    kept = list(tmp_path.glob(f"{wallet.path.name}.replaced-*"))
    assert len(kept) == 1 and later.id in {c.id for c in Wallet.open(kept[0], PASS).list()}
    r = _run(["restore", str(copy), "--yes"], wallet.path, passphrase="not-it")
    assert r.returncode == 1 and "wrong passphrase" in r.stderr  # the backup's own check first


# -- a holder key per copy (ADR 52) ------------------------------------------------------------

def _cnf(env: bytes) -> dict[str, str]:
    sd_jwt = Envelope.from_bytes(env).sd_jwt_kb
    cnf: dict[str, str] = sdjwt.parse(sd_jwt).payload["cnf"]["jwk"]
    return cnf


def test_copies_bound_to_their_own_keys_are_shown_one_per_verifier(world: World,
                                                                   wallet: Wallet) -> None:
    """A batch of copies (ADR 22), one per holder key the wallet gives (`holder-key --copies
    3`): the wallet keeps all three (it used to refuse all but the one bound to its single
    key) and shows each verifier a copy bound to a key no verifier saw before; two verifiers
    then share no key, id or signature. Once every key was shown, the copy asked for is."""
    keys = wallet.holder_jwks(3)
    assert keys[0] == wallet.holder_jwk() and len({k["x"] for k in keys}) == 3
    assert wallet.holder_jwks(3) == keys  # the same ones every time: every agency gets them
    ids = [wallet.receive(world.issue(k).to_bytes(), registry=world.ledger.registry,
                          now=T0 + 50).id for k in keys]
    assert wallet.copies(ids[0]) == (ids[0], ids[2], ids[1])  # itself, then the newest
    assert [c.key for c in wallet.list()] == [0, 1, 2]
    desks = [replace(REQ, audience=f"https://desk-{n}.example/verify") for n in range(4)]
    shown: list[bytes] = []
    used: list[str | None] = []
    for desk in desks[:3]:
        env = wallet.present(ids[0], desk, now=T0 + 90)
        assert world.verify(env, desk).verified
        shown.append(env)
        used.append(wallet.presented)
    assert sorted(used) == sorted(ids)  # type: ignore[type-var]
    assert len({json.dumps(_cnf(e), sort_keys=True) for e in shown}) == 3
    assert len({Envelope.from_bytes(e).sd_jwt_kb.split("~")[0] for e in shown}) == 3
    assert [c.shown for c in wallet.list()] == [1, 1, 1]
    # a verifier seen before gets the key it saw (a key per verifier: nothing new to link),
    # also on another of its pages (a verifier is its audience's origin)
    again = wallet.present(ids[0], replace(desks[1], nonce="n-again-0123456789",
                                           audience="https://DESK-1.example:443/apply/"),
                           now=T0 + 91)
    assert _cnf(again) == _cnf(shown[1]) and wallet.presented == used[1]
    # a fourth verifier: every key was shown, so it would link; the wallet says so
    assert wallet.would_link(ids[0], desks[3].audience)
    assert not wallet.would_link(ids[0], desks[0].audience)
    reopened = Wallet.open(wallet.path, PASS)  # the counts are kept in the file
    assert sorted(c.shown for c in reopened.list()) == [1, 1, 2]


def test_an_application_shows_copies_bound_to_one_key(world: World, wallet: Wallet) -> None:
    """A node takes an application's credentials only bound to one holder key (its proof that
    they are one holder's): the wallet answers with the copies that share a key never shown
    before, and names the key for the approval; with none in common it says so."""
    reg, edu = world.agencies["reg"], world.agencies["edu"]
    licence = {**DEGREE, "id": "licence", "title": "Licence"}
    world.ledger.govern("register_type", {"type": licence}, [reg, edu], T0 + 3)
    world.ledger.govern("grant", {"agency": "edu", "type": "licence", "from": T0,
                                  "until": T0 + 365 * DAY}, [reg, edu], T0 + 4)

    def issue(kind: str, key: dict[str, str], into: Wallet = wallet) -> str:
        world.n += 1
        now = T0 + 10 + world.n
        cred = issue_credential(registry=world.ledger.registry, agency="edu",
                                issuer_key=edu.issuer_key, kind=kind, claims=CLAIMS,
                                holder_jwk=key, now=now, valid_for=30 * DAY)
        r = world.ledger.commit([cred.anchor], now)
        bundle = world.bundle(cred.sd_jwt.serialize(), r.accepted[0][1], ("reg", "edu"))
        return into.receive(bundle.to_bytes(), registry=world.ledger.registry,
                            now=now).id

    k = wallet.holder_jwks(3)
    for key in k[:2]:
        issue("degree", key)
        issue("licence", key)
    asks = [REQ, Request("n-licence-000000001", REQ.audience, "licence", ("field",))]
    first, envs = wallet.application(asks, now=T0 + 90)
    assert first == k[0] and [_cnf(e) for _, e in envs] == [k[0], k[0]]
    elsewhere = [replace(r, audience="https://other.example/apply") for r in asks]
    second, envs = wallet.application(elsewhere, now=T0 + 91)
    assert second == k[1] and [_cnf(e) for _, e in envs] == [k[1], k[1]]
    assert not wallet.relinked
    third, _ = wallet.application(asks, now=T0 + 92)  # the first node again: its key
    assert third == k[0] and not wallet.relinked
    again, _ = wallet.application(elsewhere, now=T0 + 93)  # the second node again: its key,
    assert again == k[1] and not wallet.relinked  # not the lowest of the keys both were shown
    world.n += 400  # a licence issued later, on key 3 alone
    issue("licence", k[2])  # the newest licence, bound to key 3 alone: no degree there
    fourth, envs = wallet.application(asks, now=T0 + 600)  # the older copies still share keys
    assert fourth == k[0] and [_cnf(e) for _, e in envs] == [k[0], k[0]]
    apart = Wallet.init(wallet.path.with_name("apart.db"), PASS)
    issue("degree", apart.holder_jwk(0), apart)
    issue("licence", apart.holder_jwk(1), apart)
    with pytest.raises(PresentationError, match=r"no holder key binds a copy of every.*"
                                                r"degree \(key 1\), licence \(key 2\)"):
        apart.application(asks, now=T0 + 900)


def test_a_wallet_of_the_first_format_opens_with_its_one_key(tmp_path: Path, world: World) -> None:
    """A wallet written before ADR 52 (contents version 1: one key, nothing counted) opens;
    its credentials are bound to key 0, the key it always had, and it is written anew in
    version 2 at its next save."""
    from ledger import codec
    from wallet.store import Contents, KdfParams, derive_key

    seed = hashlib.sha256(b"old wallet").digest()
    bundle = world.issue(sdjwt.jwk_from_ed25519(PrivateKey(seed).public.raw))
    params = KdfParams.fresh()
    key = derive_key(PASS, params)
    import nacl.secret

    inner = codec.encode({"v": 1, "holder_seed": seed, "credentials": [{
        "credential_id": hashlib.sha256(b"x").digest(), "type": "degree", "issuer": "edu",
        "valid_from": T0, "valid_until": T0 + DAY, "added": T0, "bundle": bundle.to_bytes()}]})
    box = nacl.secret.SecretBox(key).encrypt(inner)
    path = tmp_path / "old.db"
    path.write_bytes(codec.encode({"v": 1, "kind": "credledger-wallet", "kdf": "argon2id",
                                   "ops": params.ops, "mem": params.mem, "salt": params.salt,
                                   "box": bytes(box)}))
    old = Wallet.open(path, PASS)
    assert old.holder_jwk() == sdjwt.jwk_from_ed25519(PrivateKey(seed).public.raw)
    env = old.present(old.list()[0].id, REQ, now=T0 + 90)
    assert _cnf(env) == old.holder_jwk()
    contents = open_sealed(path.read_bytes(), PASS)[0]
    assert isinstance(contents, Contents) and contents.credentials[0].shown == 1
    assert codec.decode(contents.to_bytes())["v"] == 2


def test_a_credential_bound_to_no_key_of_the_wallet_is_refused(world: World,
                                                               wallet: Wallet) -> None:
    stranger = sdjwt.jwk_from_ed25519(PrivateKey(hashlib.sha256(b"other").digest()).public.raw)
    with pytest.raises(BundleRefused, match="another holder key"):
        wallet.receive(world.issue(stranger).to_bytes(), registry=world.ledger.registry,
                       now=T0 + 50)
    assert wallet.list() == []


def test_cli_holder_keys_for_copies(tmp_path: Path) -> None:
    w = tmp_path / "wallet.db"
    assert _run(["init"], w).returncode == 0
    printed = _run(["holder-key", "--copies", "3"], w).stdout.splitlines()
    assert len(printed) == 3 and printed[0] == _run(["holder-key"], w).stdout.strip()
    r = _run(["holder-key", "--copies", "3", "--out", str(tmp_path / "k.json")], w)
    assert r.returncode == 0, r.stderr
    assert [(tmp_path / f"k-{n}.json").read_text().strip() for n in (1, 2, 3)] == printed
    r = _run(["holder-key", "--out", str(tmp_path / "k-1.json")], w)
    assert r.returncode == 2 and "exists" in r.stderr
    r = _run(["holder-key", "--copies", "3", "--out", str(tmp_path / "k.json"), "--force"], w)
    assert r.returncode == 0, r.stderr  # the same keys again, over the files


def test_two_presentations_at_once_take_different_copies(world: World, wallet: Wallet) -> None:
    """Two `wallet present` at once (two terminals, two verifiers): each chose the copy before
    the other counted its own, so both showed key 0 while keys 1 and 2 were unshown (a review
    found it). The copy is chosen again, and counted, under the wallet's lock."""
    keys = wallet.holder_jwks(3)
    ids = [wallet.receive(world.issue(k).to_bytes(), registry=world.ledger.registry,
                          now=T0 + 50).id for k in keys]
    a, b = Wallet.open(wallet.path, PASS), Wallet.open(wallet.path, PASS)
    ca, cb = a.copy_for(ids[0]), b.copy_for(ids[0])
    assert ca == cb == ids[0]  # both chose before either presented
    ea = a.present(ca, REQ, now=T0 + 90)
    other = Request("n-other-verifier-01", "https://other.example/v", "degree", REQ.claims)
    eb = b.present(cb, other, now=T0 + 90)
    assert _cnf(ea) != _cnf(eb) and a.presented == ids[0] and b.presented != ids[0]
    assert a.uncounted is None and b.uncounted is None
    assert sorted(c.shown for c in Wallet.open(wallet.path, PASS).list()) == [0, 1, 1]


def test_a_restore_keeps_the_presentations_counted_since_the_backup(
        world: World, wallet: Wallet, tmp_path: Path) -> None:
    """A backup taken before some presentations counted fewer: restored as it was, a key
    already shown looked fresh to the next verifier. The counts of the wallet replaced (when
    it opens with the passphrase) are kept."""
    keys = wallet.holder_jwks(2)
    ids = [wallet.receive(world.issue(k).to_bytes(), registry=world.ledger.registry,
                          now=T0 + 50).id for k in keys]
    wallet.backup(tmp_path / "b.db")
    world.n += 400  # a credential received after the backup, not a copy of those in it
    later = wallet.receive(world.issue(keys[0]).to_bytes(), registry=world.ledger.registry,
                           now=T0 + 500).id
    first = wallet.present(later, REQ, now=T0 + 510)  # verifier A sees key 0
    restored = Wallet.restore(tmp_path / "b.db", wallet.path, PASS)
    assert [c.id for c in restored.list()] == ids  # the later one is not in the backup...
    desk_b = replace(REQ, audience="https://desk-b.example/verify")
    assert restored.would_link(ids[0], desk_b.audience)  # ...but key 0 is known as shown
    again = restored.present(ids[0], desk_b, now=T0 + 520)
    assert _cnf(again) != _cnf(first) and restored.presented == ids[1]


def test_an_application_says_when_its_key_was_shown_before(world: World,
                                                           wallet: Wallet) -> None:
    (only,) = wallet.holder_jwks(1)
    wallet.receive(world.issue(only).to_bytes(), registry=world.ledger.registry, now=T0 + 50)
    wallet.application([REQ], now=T0 + 90)
    assert not wallet.relinked
    wallet.application([replace(REQ, nonce="n-same-node-again")], now=T0 + 91)
    assert not wallet.relinked  # the same verifier saw that key: nothing new to link
    other = replace(REQ, audience="https://other.example/apply")
    key, envs = wallet.application([other], now=T0 + 92)
    assert wallet.relinked and key == only and _cnf(envs[0][1]) == only


def _got(world: World, wallet: Wallet, key: dict[str, str], now: int = T0 + 50) -> str:
    return wallet.receive(world.issue(key).to_bytes(), registry=world.ledger.registry,
                          now=now).id


def test_copies_asked_for_later_on_more_keys_are_used(world: World, wallet: Wallet) -> None:
    """Copies on keys 1-3, then (as the wallet advises when they are spent) one more asked for
    later on key 4: the newest credential alone was looked at, so two verifiers got key 4
    while keys 1-3 were never shown (a review found it). Every valid copy counts."""
    k = wallet.holder_jwks(4)
    first = [_got(world, wallet, key) for key in k[:3]]
    world.n += 400
    later = _got(world, wallet, k[3], now=T0 + 600)
    desks = [replace(REQ, audience=f"https://{d}.example/v", nonce=f"n-{d}-00000000001")
             for d in "ab"]
    envs = [wallet.present(wallet.pick(d, T0 + 700), d, now=T0 + 700) for d in desks]
    assert _cnf(envs[0]) != _cnf(envs[1])
    assert wallet.pick(replace(REQ, audience="https://c.example/v"), T0 + 701) in first
    key, _ = wallet.application([replace(REQ, audience="https://node.example/apply")],
                                now=T0 + 702)
    assert not wallet.relinked and key in k and later in {c.id for c in wallet.list()}


def test_an_expired_copy_is_not_presented(world: World, wallet: Wallet) -> None:
    """Copies issued apart expire apart: in its last minutes the older copy was chosen for its
    fresh key, and the verifier said "expired"."""
    k = wallet.holder_jwks(2)
    older = _got(world, wallet, k[0])
    world.n += 250
    newer = _got(world, wallet, k[1], now=T0 + 300)
    a = replace(REQ, audience="https://a.example/v")
    wallet.present(wallet.pick(a, T0 + 400), a, now=T0 + 400)
    assert wallet.presented == newer
    late = T0 + 11 + 30 * DAY + 120  # the older copy expired, the newer one not yet
    b = replace(REQ, audience="https://b.example/v", nonce="n-b-0000000000002")
    env = wallet.present(wallet.pick(b, late), b, now=late)
    assert wallet.presented == newer and world.verify(env, b, now=late).verified
    assert wallet.copy_for(newer, "https://c.example/v", late) == newer != older



def test_an_expired_credential_named_gives_way_to_its_valid_copy(world: World,
                                                                  wallet: Wallet) -> None:
    """`wallet present ID` with the id of a copy that has expired (the one `wallet list`
    showed first) while a newer copy is valid: the expired one was presented, its key never
    shown, and the verifier said "expired" (the claims disclosed for nothing)."""
    k = wallet.holder_jwks(2)
    older = _got(world, wallet, k[0])
    world.n += 250
    newer = _got(world, wallet, k[1], now=T0 + 300)
    late = T0 + 11 + 30 * DAY + 120  # the older copy expired, the newer one not yet
    b = replace(REQ, audience="https://b.example/v", nonce="n-b-0000000000002")
    assert wallet.copy_for(older, b.audience, late) == newer
    env = wallet.present(older, b, now=late)
    assert wallet.presented == newer and world.verify(env, b, now=late).verified
    # every key shown: still the valid copy, never the expired one asked for
    c = replace(REQ, audience="https://c.example/v", nonce="n-c-0000000000003")
    wallet.present(older, c, now=late)
    assert wallet.presented == newer


def test_an_application_takes_the_key_its_node_saw_and_sees_other_processes(
        world: World, wallet: Wallet) -> None:
    """An application chose its key on what the wallet held when it was opened (before the
    prompt): another terminal's presentation since was not seen (a review found it). It is
    chosen under the lock, after taking that in; and a node that saw a key gets that key."""
    k = wallet.holder_jwks(3)
    ids = [_got(world, wallet, key) for key in k]
    slow = Wallet.open(wallet.path, PASS)  # `wallet apply` opened, its prompt pending
    Wallet.open(wallet.path, PASS).present(ids[0], replace(REQ, audience="https://a.ex/v"),
                                           now=T0 + 90)  # another terminal: key 1 to A
    node = replace(REQ, audience="https://node.example/apply", nonce="n-node-0000000001")
    key, _ = slow.application([node], now=T0 + 91)
    assert key == k[1] and not slow.relinked
    wallet.present(ids[2], replace(REQ, audience="https://b.ex/v", nonce="n-b-00000000003"),
                   now=T0 + 92)
    again, _ = Wallet.open(wallet.path, PASS).application(
        [replace(node, nonce="n-node-0000000002")], now=T0 + 93)
    assert again == k[1]  # the key this node saw, not the lowest


def test_a_restore_over_another_wallet_takes_nothing_of_its_record(
        world: World, wallet: Wallet, tmp_path: Path) -> None:
    """Another wallet (another seed) restored over with this one's backup: its record of keys
    shown named its own keys, and merged in, made this wallet show a key another verifier
    saw while a fresh one existed (a review found it)."""
    k = wallet.holder_jwks(2)
    ids = [_got(world, wallet, key) for key in k]
    a = replace(REQ, audience="https://a.example/v")
    wallet.present(ids[0], a, now=T0 + 90)  # this wallet's key 1 to A
    wallet.backup(tmp_path / "b.db")
    new = Wallet.init(tmp_path / "new.db", PASS)  # another wallet, the same passphrase
    z = replace(REQ, audience="https://z.example/v", nonce="n-z-0000000000001")
    new.present(_got(world, new, new.holder_jwk(0)), z, now=T0 + 91)  # its key 1 to Z
    restored = Wallet.restore(tmp_path / "b.db", new.path, PASS)
    restored.present(ids[1], replace(z, nonce="n-z-0000000000002"), now=T0 + 92)
    assert restored.presented == ids[1]  # its own fresh key 2, not key 1, which A saw


def test_a_presentation_the_wallet_cannot_count_is_refused(
        world: World, wallet: Wallet, monkeypatch: pytest.MonkeyPatch) -> None:
    """A full disk while counting: the envelope was given uncounted, and the next verifier got
    the same key. Only read-only media gives one uncounted (said); anything else refuses."""
    import errno

    import wallet.core as core

    k = wallet.holder_jwks(2)
    ids = [_got(world, wallet, key) for key in k]

    def fails(code: int) -> Callable[..., None]:
        def write(*_: object, **__: object) -> None:
            raise OSError(code, os.strerror(code))
        return write

    monkeypatch.setattr(core, "write_atomic", fails(errno.ENOSPC))
    with pytest.raises(WalletFileError, match="No space left"):
        wallet.present(ids[0], replace(REQ, audience="https://a.example/v"), now=T0 + 90)
    monkeypatch.setattr(core, "write_atomic", fails(errno.EROFS))
    env = wallet.present(ids[0], replace(REQ, audience="https://a.example/v"), now=T0 + 90)
    assert env and wallet.uncounted and "Read-only" in wallet.uncounted


def test_a_malformed_record_of_keys_shown_is_refused() -> None:
    from ledger import codec
    from ledger.errors import DecodeError
    from wallet.store import Contents

    seed = bytes(32)
    for bad in ([[0, "a"], [0, "a"]], [[100, "a"]], [[-1, "a"]], [[0]], [["0", "a"]],
                [[0, "x" * 3000]], [[True, "a"]]):
        with pytest.raises(DecodeError):
            Contents.from_bytes(codec.encode({"v": 2, "holder_seed": seed, "credentials": [],
                                              "shown_to": bad}))


def test_an_application_leaves_out_a_copy_its_snapshot_says_revoked(world: World,
                                                                     wallet: Wallet) -> None:
    """The wallet knows no status when it presents; `wallet apply` has the snapshot, whose
    lists say which copy the agency revoked: an application showed the revoked copy, and the
    node refused it (the copies journey hunt)."""
    from ledger.network import status_tx

    k = wallet.holder_jwks(2)
    ids = [_got(world, wallet, key) for key in k]
    node = replace(REQ, audience="https://node.example/apply")
    assert wallet.application([node], now=T0 + 90, dry=True)[0] == k[0]
    revoke = status_tx(world.ledger.net, world.agencies["edu"], bytes.fromhex(ids[0]),
                       "revoked", "withdrawn", T0 + 95)
    assert not world.ledger.commit([revoke], T0 + 95).rejected
    key, envs = wallet.application([node], now=T0 + 100, status=world.lists())
    assert key == k[1] and world.verify(envs[0][1], node, now=T0 + 100).verified
    revoke = status_tx(world.ledger.net, world.agencies["edu"], bytes.fromhex(ids[1]),
                       "revoked", "withdrawn", T0 + 105)
    assert not world.ledger.commit([revoke], T0 + 105).rejected
    with pytest.raises(PresentationError, match="revoked or suspended"):
        wallet.application([replace(node, nonce="n-again-00000001")], now=T0 + 110,
                           status=world.lists())


def test_a_narrow_terminal_or_a_pipe_lists_whole_ids_and_dates(live_world: World,
                                                                tmp_path: Path) -> None:
    """Piped (80 columns) `wallet list` cut its dates to "2026-11-…", and at 20 columns every
    cell was empty: a narrow output lists each credential on lines, nothing cut."""
    from ledger.timetext import utc_text

    w, cid = _cli_wallet_holding_one(live_world, tmp_path)
    info = Wallet.open(w, PASS).info(cid)
    dates = [utc_text(t)[:10] for t in (info.valid_from, info.valid_until)]
    for columns in ("20", "80"):
        r = subprocess.run([str(WALLET_BIN), "--wallet", str(w), "list"], capture_output=True,
                           text=True, env={**os.environ, "WALLET_PASSPHRASE": PASS.decode(),
                                           "COLUMNS": columns}, timeout=120, check=False)
        assert r.returncode == 0, r.stderr
        assert cid[:16] in r.stdout and all(d in r.stdout for d in dates), r.stdout
        assert "…" not in r.stdout


def test_a_credential_is_removed_on_request_with_or_without_its_copies(
        live_world: World, tmp_path: Path) -> None:
    """Copies are those issued with it (the same claims and dates on other holder keys); a
    renewal, on its own key or another's, is not one, and `--copies` leaves it (it took it,
    with the prompt showing only the first credential's dates)."""
    w = tmp_path / "wallet.db"
    assert _run(["init"], w).returncode == 0
    keys = [json.loads(line) for line in
            _run(["holder-key", "--copies", "3"], w).stdout.splitlines()]
    registry = tmp_path / "reg.bin"
    registry.write_bytes(live_world.ledger.registry.to_bytes())
    together = live_world.t0 + 20
    ids = []  # three copies issued together, then renewals on keys 1 and 2
    for n, (jwk, at) in enumerate([*((k, together) for k in keys), (keys[0], None),
                                   (keys[1], None)]):
        bundle = tmp_path / f"b{n}.bundle"
        bundle.write_bytes(live_world.issue(jwk, at=at).to_bytes())
        ids.append(_run(["receive", str(bundle), "--registry", str(registry)], w).stdout.strip())
    renewals = ids[3:]
    asked = _run(["remove", ids[0][:10]], w)  # no terminal to ask on, and no --yes
    assert asked.returncode == 1 and "--yes" in asked.stderr
    assert len(Wallet.open(w, PASS).list()) == 5  # nothing was done
    one = _run(["remove", ids[1][:10], "--yes"], w)
    assert one.returncode == 0 and one.stdout.split() == [ids[1]], one.stderr
    assert "2 copies of it on other keys stay" in one.stderr  # ids[0] and ids[2]
    r = _run(["remove", ids[2][:10], "--copies", "--yes"], w)
    assert r.returncode == 0 and r.stdout.split() == [ids[2], ids[0]], r.stderr
    assert "key 1," in r.stderr and "key 3," in r.stderr  # each shown with its key and dates
    assert [c.id for c in Wallet.open(w, PASS).list()] == renewals
    gone = _run(["remove", ids[1][:10], "--yes"], w)
    assert gone.returncode == 2 and "no credential" in gone.stderr, gone.stderr
    wallet = Wallet.open(w, PASS)
    _run(["remove", renewals[0][:10], "--yes"], w)
    with pytest.raises(WalletError, match="left the wallet meanwhile"):
        wallet.remove([renewals[0]])  # opened before it went: nothing to remove
    assert [c.id for c in Wallet.open(w, PASS).list()] == renewals[1:]


def test_ctrl_c_at_a_yes_no_question_exits_130_and_removes_nothing(
        live_world: World, tmp_path: Path) -> None:
    """Ctrl-C at `[y/N]` exited 1 with click's "Aborted!", as a no does, where Ctrl-C anywhere
    else (a passphrase prompt, a long export) exits 130: a script could not tell the two.
    Asked on a real terminal (a pseudo-terminal), interrupted as the terminal would."""
    import pty
    import signal

    # SIGINT as a terminal's job has it: a test runner started in the background may ignore
    # it, or the thread starting it block it, and exec keeps either
    foreground = ("import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); "
                  "signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT}); "
                  "os.execv(sys.argv[1], sys.argv[1:])")
    w, cid = _cli_wallet_holding_one(live_world, tmp_path)
    primary, secondary = pty.openpty()
    env = {k: v for k, v in os.environ.items() if k not in ("WALLET_PATH", "WALLET_PASSPHRASE")}
    proc = subprocess.Popen([sys.executable, "-c", foreground, str(WALLET_BIN), "--wallet",
                             str(w), "remove", cid[:10]],
                            stdin=secondary, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=env | {"WALLET_PASSPHRASE": PASS.decode(), "NO_COLOR": "1"})
    os.close(secondary)
    try:
        assert proc.stderr is not None
        said = b""
        while b"[y/N]" not in said:
            chunk = os.read(proc.stderr.fileno(), 4096)
            assert chunk, said  # the process ended before it asked
            said += chunk
        # until it waits for the answer: a SIGINT between the question's write and the read
        # of the answer is taken by Python's handler with no read to interrupt, and the read
        # then waits (a terminal's user presses Ctrl-C again; under load this was one run in
        # two, round 34)
        for _ in range(3000):
            with open(f"/proc/{proc.pid}/stat") as f:
                if f.read().rsplit(")", 1)[1].split()[0] == "S":
                    break
            time.sleep(0.01)
        proc.send_signal(signal.SIGINT)
        _, rest = proc.communicate(timeout=60)
    finally:
        os.close(primary)
        if proc.poll() is None:
            proc.kill()
            proc.communicate()  # its pipes closed, no process left behind
    assert proc.returncode == 130, (said + rest).decode()
    assert b"Nothing was done." in rest and b"Aborted" not in rest, rest.decode()
    assert [c.id for c in Wallet.open(w, PASS).list()] == [cid]


# -- restore and expiry edges (a mutation round found them untested, ADR 54) ------------------

def test_restoring_an_older_backup_keeps_presentation_counts(world: World, wallet: Wallet,
                                                              tmp_path: Path) -> None:
    """A backup taken before a presentation, restored over the wallet, does not forget that
    the credential was shown (the count, not only the key and verifier pairs): with shown_to
    full, the count is what keeps a linkable key from being used again."""
    first = wallet.receive(world.issue(wallet.holder_jwk()).to_bytes(),
                           registry=world.ledger.registry, now=NOW)
    copy = tmp_path / "backup.db"
    wallet.backup(copy)
    wallet.present(first.id, REQ, now=NOW + 80)
    assert wallet.info(first.id).shown == 1
    restored = Wallet.restore(copy, wallet.path, PASS)
    assert restored.info(first.id).shown == 1


def test_a_credential_is_not_picked_at_its_expiry(world: World, wallet: Wallet) -> None:
    """Validity is valid_from <= now < valid_until, with the verifiers' clock skew at each end
    (:func:`ledger.sdjwt.window_state`): from valid_until + skew the wallet holds none, and
    from valid_from - skew the credential is valid."""
    got = wallet.receive(world.issue(wallet.holder_jwk()).to_bytes(),
                         registry=world.ledger.registry, now=NOW)
    info = wallet.info(got.id)
    assert wallet.pick(REQ, info.valid_until + sdjwt.CLOCK_SKEW - 1) == got.id
    with pytest.raises(PresentationError, match="no valid"):
        wallet.pick(REQ, info.valid_until + sdjwt.CLOCK_SKEW)
    assert info.state(info.valid_from - sdjwt.CLOCK_SKEW) == "valid"
    assert info.state(info.valid_from - sdjwt.CLOCK_SKEW - 1) != "valid"


# -- found by a mutation round of the node, the verifier and the codec (ADR 54) ----------------

@pytest.mark.parametrize("field", [{"ops": 256}, {"ops": 5}, {"mem": 1 << 34},
                                   {"mem": (1 << 30) + 1024}])
def test_a_header_over_the_kdf_caps_is_refused_before_any_key_derivation(
        wallet: Wallet, field: dict[str, int], monkeypatch: pytest.MonkeyPatch) -> None:
    """A wallet file names its own Argon2id cost in clear; one over libsodium's SENSITIVE
    preset (4 passes, 1 GiB) is refused as damaged *before* Argon2id runs: a tampered header
    must not make `wallet` spend minutes or 16 GiB of memory to fail the tag check after.
    (test_a_header_cannot_demand_more_key_stretching_than_the_strongest_preset matches only
    "damaged", which the tag failure after a full derivation says too.)"""
    import nacl.pwhash

    from ledger import codec

    header = codec.decode(wallet.path.read_bytes())
    wallet.path.write_bytes(codec.encode({**header, **field}))

    def no_derivation(*args: object, **kwargs: object) -> bytes:
        raise AssertionError("Argon2id ran on a header over the caps")

    monkeypatch.setattr(nacl.pwhash.argon2id, "kdf", no_derivation)
    name = next(iter(field))
    with pytest.raises(WalletFileError, match=rf"not a wallet file or is damaged: .*\.{name}: "):
        Wallet.open(wallet.path, PASS)


def test_an_empty_passphrase_never_seals_or_opens_a_wallet(tmp_path: Path,
                                                           wallet: Wallet) -> None:
    """The library refuses an empty passphrase itself (not only the CLI's prompt): a wallet
    sealed under b"" would be readable by anyone who finds the file."""
    with pytest.raises(WalletFileError, match="empty passphrase"):
        Wallet.init(tmp_path / "new.db", b"")
    assert not (tmp_path / "new.db").exists()
    with pytest.raises(WalletFileError, match="empty passphrase"):
        Wallet.open(wallet.path, b"")


# -- found by a mutation round of the wallet (ADR 56) -------------------------------------------

def test_a_wallet_listing_one_credential_twice_is_refused() -> None:
    """Ids are unique in a wallet (removing, presenting and counting one goes by its id): a
    file's contents holding one twice do not open, and cannot be made to be saved."""
    from ledger import codec
    from ledger.errors import DecodeError
    from wallet.store import Contents, StoredCredential

    c = StoredCredential(bytes(range(32)), "degree", "edu", T0, T0 + DAY, T0, b"bundle")
    with pytest.raises(DecodeError, match="stored twice"):
        Contents.from_bytes(codec.encode({"v": 2, "holder_seed": bytes(32),
                                          "credentials": [c.to_map(), c.to_map()],
                                          "shown_to": []}))
    with pytest.raises(ValueError, match="stored twice"):
        Contents(bytes(32), (c, c))
    assert Contents.from_bytes(Contents(bytes(32), (c,)).to_bytes()).credentials == (c,)


def test_the_wallet_lock_is_held_against_other_processes(tmp_path: Path) -> None:
    """While a wallet operation holds ``<wallet>.lock`` (read-modify-write), another process's
    attempt to take it does not succeed: flock(2), exclusive, released on leaving."""
    import fcntl

    from wallet.store import lock

    path = tmp_path / "wallet.db"
    other = os.open(tmp_path / "wallet.db.lock", os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        with lock(path):
            with pytest.raises(BlockingIOError):
                fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
            with pytest.raises(BlockingIOError):  # not even to read
                fcntl.flock(other, fcntl.LOCK_SH | fcntl.LOCK_NB)
        fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)  # released
    finally:
        os.close(other)


def test_a_backup_copies_only_a_wallet_file_this_passphrase_opens_whole(
        wallet: Wallet, tmp_path: Path) -> None:
    """The backup is the file as it is on disk now: one damaged since the wallet was opened,
    or another wallet put in its place (under another passphrase), is not copied as if it were
    a backup of this one, and no file is written."""
    blob = wallet.path.read_bytes()
    i = len(blob) // 2  # within the encrypted box
    damaged = blob[:i] + bytes([blob[i] ^ 1]) + blob[i + 1:]
    other = tmp_path / "other.db"
    Wallet.init(other, b"another passphrase")
    for replaced_by in (damaged, other.read_bytes()):
        wallet.path.write_bytes(replaced_by)
        dest = tmp_path / "backup.db"
        with pytest.raises(WalletFileError, match="wrong passphrase, or the file was changed"):
            wallet.backup(dest)
        assert not dest.exists()
    wallet.path.write_bytes(blob)
    wallet.backup(tmp_path / "backup.db")
    assert (tmp_path / "backup.db").read_bytes() == blob


def test_a_request_naming_a_claim_every_presentation_shows_is_answered(
        world: World, wallet: Wallet) -> None:
    """``iss``, ``exp`` and the like are in the issuer-signed JWT, shown to every verifier: a
    request naming them is no request for a claim the credential lacks. Nothing more is
    disclosed for them, and the verifier gets them as always."""
    info = wallet.receive(world.issue(wallet.holder_jwk()).to_bytes(),
                          registry=world.ledger.registry, now=NOW)
    req = replace(REQ, claims=("field", "exp", "iss"))
    preview = wallet.preview(info.id, req)
    assert preview.claims == ("field",) and "exp" in preview.always
    env = wallet.present(info.id, req, now=T0 + 90)
    assert _disclosed_names(env) == ["field"]


def test_a_wallet_whose_record_of_keys_shown_is_full_still_presents(
        world: World, wallet: Wallet) -> None:
    """At MAX_SHOWN_TO (key, verifier) pairs the record takes no more: a presentation to a new
    verifier is still made and counted on its credential (the file stays one the wallet
    opens), the pair not added."""
    from wallet.store import MAX_SHOWN_TO

    info = wallet.receive(world.issue(wallet.holder_jwk()).to_bytes(),
                          registry=world.ledger.registry, now=NOW)
    full = tuple((0, f"https://desk-{i}.example") for i in range(MAX_SHOWN_TO))
    wallet._save(replace(wallet._contents, shown_to=full))
    env = wallet.present(info.id, REQ, now=T0 + 90)
    assert world.verify(env).verified
    again = Wallet.open(wallet.path, PASS)
    assert again.info(info.id).shown == 1
    assert again._contents.shown_to == full


def test_an_application_leaves_out_a_copy_its_snapshot_says_suspended(world: World,
                                                                      wallet: Wallet) -> None:
    """As a revoked copy: a suspended one would be refused by the node too."""
    from ledger.network import status_tx

    k = wallet.holder_jwks(2)
    ids = [_got(world, wallet, key) for key in k]
    node = replace(REQ, audience="https://node.example/apply")
    suspend = status_tx(world.ledger.net, world.agencies["edu"], bytes.fromhex(ids[0]),
                        "suspended", "under_review", T0 + 95)
    assert not world.ledger.commit([suspend], T0 + 95).rejected
    key, envs = wallet.application([node], now=T0 + 100, status=world.lists())
    assert key == k[1] and world.verify(envs[0][1], node, now=T0 + 100).verified


def test_a_wallet_gives_from_one_to_a_hundred_holder_keys(wallet: Wallet) -> None:
    """``wallet holder-key --copies`` takes 1 to 100: the wallet gives all 100, each its own."""
    from wallet.store import MAX_KEYS

    keys = wallet.holder_jwks(MAX_KEYS)
    assert len(keys) == MAX_KEYS == 100 and len({k["x"] for k in keys}) == 100
    for n in (0, MAX_KEYS + 1):
        with pytest.raises(WalletError, match="give from 1 to 100 holder keys"):
            wallet.holder_jwks(n)


def test_a_file_with_no_end_given_as_input_is_refused_not_read_whole(
        live_world: World, tmp_path: Path) -> None:
    """A file given by mistake that never ends (/dev/zero) or is huge, as a bundle, a request,
    a backup, a snapshot or the wallet itself: refused in one line once past the largest any
    of them may be, not read whole (all the memory there was, then a MemoryError traceback);
    the wallet is left as it was."""
    import resource

    w = tmp_path / "wallet.db"
    assert _run(["init"], w).returncode == 0
    before = w.read_bytes()
    registry = tmp_path / "registry.bin"
    registry.write_bytes(live_world.ledger.registry.to_bytes())
    request = tmp_path / "request.json"
    request.write_text(json.dumps(REQ.to_json()))
    endless = "/dev/zero"

    def small_memory() -> None:  # what a small machine has: the read must stop well within
        resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))

    env = {k: v for k, v in os.environ.items() if k != "WALLET_PATH"}
    env |= {"WALLET_PASSPHRASE": PASS.decode(), "COLUMNS": "200", "NO_COLOR": "1"}
    for wallet, args in ((w, ["receive", endless, "--registry", str(registry)]),
                         (w, ["receive", str(request), "--registry", endless]),
                         (w, ["present", "abcdef", "--request", endless, "--yes"]),
                         (w, ["restore", endless, "--yes"]),
                         (Path(endless), ["list"])):
        r = subprocess.run([str(WALLET_BIN), "--wallet", str(wallet), *args],
                           capture_output=True, text=True, env=env, cwd=tmp_path,
                           stdin=subprocess.DEVNULL, preexec_fn=small_memory, check=False)
        assert r.returncode in (1, 2) and "Traceback" not in r.stderr, (args, r.stderr)
        assert f"{endless} is over 67,108,864 bytes" in r.stderr, (args, r.stderr)
        assert w.read_bytes() == before


def test_a_wallet_asking_more_memory_than_there_is_says_so(wallet: Wallet,
                                                           tmp_path: Path) -> None:
    """A wallet file's header names the memory its key stretching takes (up to 1 GiB, the
    strongest preset; a changed header too, found out only after). Where the process is given
    less, the wallet says so in one line and changes nothing: it ended in a traceback."""
    import resource

    raw = codec.decode(wallet.path.read_bytes())
    raw["mem"] = 1 << 30
    asking = tmp_path / "asking.db"
    asking.write_bytes(codec.encode(raw))

    def small_memory() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (700 << 20, 700 << 20))

    env = {k: v for k, v in os.environ.items() if k != "WALLET_PATH"}
    env |= {"WALLET_PASSPHRASE": PASS.decode(), "COLUMNS": "200", "NO_COLOR": "1"}
    for args in (["list"], ["backup", str(tmp_path / "b.db")]):
        r = subprocess.run([str(WALLET_BIN), "--wallet", str(asking), *args],
                           capture_output=True, text=True, env=env, stdin=subprocess.DEVNULL,
                           preexec_fn=small_memory, check=False)
        assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
        assert "asks for 1024 MiB of memory" in r.stderr, r.stderr
    assert asking.read_bytes() == codec.encode(raw) and not (tmp_path / "b.db").exists()


# -- the command line's outputs (a mutation round over wallet/cli.py, round 15) ----------------

def test_cli_outputs_a_presentation_beside_its_qr_code_and_never_over_a_file(
        live_world: World, tmp_path: Path) -> None:
    """An --out ending .png keeps the envelope there and the QR code in .qr.png; a QR code's
    name already taken, or a dangling link at --out, is refused before anything is signed;
    both files are the holder's alone; a pipe gets the text only (the QR code is drawn on a
    terminal)."""
    w, cid = _cli_wallet_holding_one(live_world, tmp_path)
    request = tmp_path / "request.json"
    request.write_text(json.dumps(REQ.to_json()))

    def present(out: Path) -> subprocess.CompletedProcess[str]:
        return _run(["present", cid[:10], "--request", str(request), "--out", str(out),
                     "--yes"], w)

    out = tmp_path / "env.png"
    r = present(out)
    assert r.returncode == 0, r.stderr
    env, png = out.read_bytes(), (tmp_path / "env.qr.png").read_bytes()
    assert live_world.verify(env, now=int(time.time())).verified
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    assert r.stdout.splitlines() == [base64.urlsafe_b64encode(env).rstrip(b"=").decode()]
    assert "another wallet process" not in r.stderr  # it presented the copy it chose
    for made in (out, tmp_path / "env.qr.png"):
        assert stat.S_IMODE(made.stat().st_mode) == 0o600, made
    shown = Wallet.open(w, PASS).info(cid).shown

    (tmp_path / "second.png").write_bytes(b"the holder's own picture")
    r = present(tmp_path / "second.bin")
    assert r.returncode == 2 and f"{tmp_path / 'second.png'} exists" in r.stderr, r.stderr
    assert (tmp_path / "second.png").read_bytes() == b"the holder's own picture"
    assert not (tmp_path / "second.bin").exists()
    (tmp_path / "third.bin").symlink_to(tmp_path / "nowhere.bin")
    r = present(tmp_path / "third.bin")
    assert r.returncode == 2 and "exists" in r.stderr, r.stderr
    assert not (tmp_path / "nowhere.bin").exists()
    r = present(tmp_path / "no-such-folder" / "env.bin")
    assert r.returncode == 2 and "there is no folder" in r.stderr, r.stderr
    assert Wallet.open(w, PASS).info(cid).shown == shown  # nothing was signed


def test_cli_holder_keys_and_backups_never_follow_a_dangling_link(tmp_path: Path) -> None:
    """A link to nowhere at --out (or a backup's path) is a file there: refused as one (2), as
    is a missing folder; the folder the wallet is made in is private (0700); --out - prints,
    writing no file named -."""
    w = tmp_path / "home" / "wallet.db"
    assert _run(["init"], w).returncode == 0
    assert stat.S_IMODE(w.parent.stat().st_mode) == 0o700
    for args in (["holder-key", "--out"], ["backup"]):
        link = tmp_path / f"{args[0]}.json"
        link.symlink_to(tmp_path / f"{args[0]}-nowhere")
        r = _run([*args, str(link)], w)
        assert r.returncode == 2 and f"{link} exists" in r.stderr, (args, r.stderr)
        assert not (tmp_path / f"{args[0]}-nowhere").exists()
    r = _run(["holder-key", "--out", str(tmp_path / "no-such-folder" / "k.json")], w)
    assert r.returncode == 2 and "there is no folder" in r.stderr, r.stderr
    r = _run(["holder-key", "--out", "-"], w, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout == _run(["holder-key"], w).stdout and json.loads(r.stdout)["kty"] == "OKP"
    assert not (tmp_path / "-").exists()


def test_cli_lists_a_table_from_110_columns(live_world: World, tmp_path: Path) -> None:
    """110 columns take `wallet list`'s table whole; fewer get lines (no cell cut short)."""
    w, cid = _cli_wallet_holding_one(live_world, tmp_path)
    for columns, table in (("109", False), ("110", True)):
        r = subprocess.run([str(WALLET_BIN), "--wallet", str(w), "list"], capture_output=True,
                           text=True, env={**os.environ, "WALLET_PASSPHRASE": PASS.decode(),
                                           "COLUMNS": columns}, timeout=120, check=False)
        assert r.returncode == 0, r.stderr
        assert cid[:16] in r.stdout and "…" not in r.stdout, r.stdout
        assert ("valid until" in r.stdout) == table, (columns, r.stdout)
    drawn = [line for line in r.stdout.splitlines() if line[:1] in "┏┃┡│└"]
    assert drawn and max(map(len, drawn)) <= 110  # whole, within the 110 columns


def test_an_application_is_bound_only_to_the_nodes_own_origin() -> None:
    """Scheme, host (any case) and port, a default port spelled or not; a URL with no host is
    no origin, so nothing is the same as it."""
    from wallet.cli import _same_origin

    assert _same_origin("https://Node.example/apply", "https://node.example:443")
    assert _same_origin("http://node.example:80/apply", "http://node.example/")
    assert not _same_origin("https://node.example:8443/apply", "https://node.example")
    assert not _same_origin("http://node.example/apply", "https://node.example")
    assert not _same_origin("node.example", "node.example")


def test_apply_waits_for_the_node_longer_than_a_decision_may_take() -> None:
    """A node answers an application once it committed the decision, committed the approval
    credential's anchor (up to COMMIT_WAIT each) and, replicated, saw a final checkpoint cover
    it (up to FINAL_WAIT): `wallet apply` gave up after 60 s, while the node might answer at
    75 s with a credential it gives once (the decision on the ledger, the credential lost)."""
    from node.service import COMMIT_WAIT, FINAL_WAIT
    from wallet.cli import APPLY_WAIT

    assert APPLY_WAIT >= 2 * (2 * COMMIT_WAIT + FINAL_WAIT)  # and room for a busy node


def test_a_verifiers_text_is_cut_only_past_its_limit() -> None:
    from wallet.cli import _shown

    assert _shown("a" * 120) == "“" + "a" * 120 + "”"
    assert _shown("a" * 121) == "“" + "a" * 120 + "…”"
    assert _shown("a    b " + " " * 300 + "c", 64) == "“a b c”"  # padding folded


def test_outside_text_on_the_terminal_is_one_line_of_escapes_quoted_and_cut() -> None:
    """A verifier's or a node's text reaches the terminal with its control and format
    characters as escapes (an ESC sequence, a right-to-left override), its runs of spaces
    as one, cut at its limit, and quoted (helper round 36M: dropping the escapes of a
    prompt's text passed every test)."""
    from wallet.cli import _quoted, _shown

    assert _shown("desk\x1b]0;x\x07 \u202e" + " " * 5 + "b") == \
        "\u201cdesk\\x1b]0;x\\x07 \\u202e b\u201d"
    assert _quoted("svc\x1b[2J" + "  x" * 100, 20) == repr("svc\\x1b[2J x x x x x\u2026")


def test_cli_receive_takes_a_registry_or_a_trust_list_never_both(tmp_path: Path) -> None:
    """A bundle is checked against the network's registry, a foreign credential against a
    trust list: given both, which was meant is unknown, so it is a usage error (2)."""
    w = tmp_path / "wallet.db"
    assert _run(["init"], w).returncode == 0
    for name in ("cred.txt", "reg.bin", "trust.json"):
        (tmp_path / name).write_text("{}")
    r = _run(["receive", str(tmp_path / "cred.txt"), "--registry", str(tmp_path / "reg.bin"),
              "--trust", str(tmp_path / "trust.json")], w)
    assert r.returncode == 2 and "exactly one of --registry" in r.stderr, r.stderr
    assert Wallet.open(w, PASS).list() == []


def test_cli_lists_an_empty_wallet_on_standard_error_only(tmp_path: Path) -> None:
    """Standard output is for what a script reads: an empty wallet's list is one line on
    standard error and nothing on standard output (no empty table)."""
    w = tmp_path / "wallet.db"
    assert _run(["init"], w).returncode == 0
    r = _run(["list"], w)
    assert (r.returncode, r.stdout) == (0, ""), r.stdout
    assert "The wallet holds no credentials yet." in r.stderr


def test_cli_names_the_folder_it_could_not_write_a_key_file_in(tmp_path: Path) -> None:
    """A write refused by the file system is one line that names the file asked for (exit 1),
    not only the system's words, nor the hidden file it is first written to (ADR 68)."""
    from test_audit import _make_read_only

    w = tmp_path / "wallet.db"
    assert _run(["init"], w).returncode == 0
    ro = tmp_path / "ro"
    ro.mkdir()
    undo = _make_read_only([ro])
    try:
        r = _run(["holder-key", "--out", str(ro / "key.json")], w)
    finally:
        subprocess.run(undo, check=True)
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
    assert f"{ro}/key.json" in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert ".tmp" not in r.stderr, r.stderr
    assert list(ro.iterdir()) == []


def test_a_node_answering_with_a_claim_nested_past_any_depth_is_refused_not_a_traceback(
        world: World, wallet: Wallet) -> None:
    """`wallet apply` reads the approval in a node's answer before any check
    (:func:`wallet.core.approval_claims`): a disclosure nested thousands deep ended in a
    RecursionError traceback, and the answer was neither refused nor kept beside the wallet."""
    from wallet.core import approval_claims

    b = world.issue(wallet.holder_jwk())
    deep = _b64(('["c2FsdA","decision",' + "[" * 20_000 + "]" * 20_000 + "]").encode())
    jwt = b.sd_jwt.split("~", 1)[0]
    head, sig = jwt.split(".")[0], jwt.split(".")[2]
    body = {**sdjwt.parse_jws_payload(jwt), "_sd": [_b64(hashlib.sha256(deep.encode()).digest())]}
    hostile = replace(b, sd_jwt=f"{head}.{_b64(json.dumps(body).encode())}.{sig}~{deep}~")
    with pytest.raises(BundleRefused) as e:
        approval_claims(hostile.to_bytes(), {"service": "elderly-allowance", "agency": "edu"})
    assert e.value.step == "bundle" and "nested too deeply" in str(e.value)


def test_presenting_a_credential_no_copy_of_which_is_valid_says_so_before_signing(
        world: World, wallet: Wallet, tmp_path: Path) -> None:
    """With no valid copy at all, `wallet present` showed its preview as for any other and
    signed: the verifier refused it as expired, the claims disclosed for nothing (helper
    round 22W). The preview says the credential's state and dates before anything is signed
    (this world's credentials ended in 2023, by the clock the CLI reads)."""
    cid = _got(world, wallet, wallet.holder_jwk())
    request = tmp_path / "request.json"
    request.write_text(json.dumps(REQ.to_json()))
    out = tmp_path / "env.bin"
    r = _run(["present", cid[:10], "--request", str(request), "--out", str(out)], wallet.path)
    said = " ".join(r.stderr.split())
    assert r.returncode == 1 and not out.exists(), r.stderr  # no answer to the prompt
    assert "this credential is expired (valid 2023-" in said, said
    assert "no copy of it is valid now: the verifier will refuse it" in said, said


def test_cli_init_over_a_wallet_refuses_before_asking_a_passphrase(tmp_path: Path) -> None:
    """`wallet init` run twice says a wallet is there before it asks for a new passphrase
    (twice) that it would then throw away; the wallet is left as it was."""
    w = tmp_path / "wallet.db"
    assert _run(["init"], w).returncode == 0
    before = w.read_bytes()
    env = {k: v for k, v in os.environ.items() if k not in ("WALLET_PATH", "WALLET_PASSPHRASE")}
    r = subprocess.run([str(WALLET_BIN), "--wallet", str(w), "init"], capture_output=True,
                       text=True, env=env | {"COLUMNS": "200", "NO_COLOR": "1"}, timeout=120,
                       stdin=subprocess.DEVNULL, check=False)
    assert r.returncode == 1 and "a wallet already exists" in r.stderr, r.stderr
    assert "passphrase" not in r.stderr.lower(), r.stderr
    assert w.read_bytes() == before
