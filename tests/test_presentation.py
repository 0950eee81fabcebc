"""Issue → bundle → present → verify_envelope, through a real store and checkpoint."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any, cast

import pytest
from conftest import DAY, T0, LedgerHarness
from credworld import CLAIMS, HOLDER, REQ, World, present

from ledger import codec, sdjwt
from ledger.credentials import STATUS_LIST_SIZE, issue_credential, status_list_uri
from ledger.display import printable
from ledger.errors import DecodeError
from ledger.finality import sign_checkpoint
from ledger.keys import PrivateKey
from ledger.network import Agency, issue_tx, status_tx
from ledger.offline import (
    SnapshotError,
    StatusListCache,
    export_snapshot,
    load_snapshot,
    merge_snapshots,
)
from ledger.presentation import Bundle, Report, Request
from ledger.statuslist import StatusList, StatusListError, make_token


@pytest.fixture
def world(ledger: LedgerHarness, agencies: dict[str, Agency]) -> World:
    return World(ledger, agencies)


def test_valid_presentation_discloses_only_what_was_asked(world: World) -> None:
    bundle, _ = world.issue()
    report = world.verify(present(Bundle.from_bytes(bundle.to_bytes())))
    assert report.verified, report.to_json()
    assert report.status == "valid"
    assert report.claims == {"degree_level": "master", "field": "hydrology"}
    assert [c.name for c in report.checks] == [
        "envelope", "checkpoint", "anchor_inclusion", "anchor", "issuer_authority", "sd_jwt",
        "anchor_binding", "requested_claims", "status"]


def test_envelope_for_three_claims_fits_a_qr_code(world: World) -> None:
    bundle, _ = world.issue()
    env = present(bundle, replace(REQ, claims=("degree_level", "field", "awarded_on")))
    assert len(env) <= 2900


def _failed(report: Report) -> tuple[str, str]:
    bad = [c for c in report.checks if not c.ok]
    assert bad, report.to_json()
    assert not report.verified
    return bad[0].name, bad[0].detail


def test_revoked_then_suspended_then_reinstated(world: World) -> None:
    bundle, cid = world.issue()
    env = present(bundle)
    edu = world.agencies["edu"]
    world.ledger.commit([status_tx("demo", edu, cid, "suspended", "review", T0 + 12)], T0 + 12)
    assert _failed(world.verify(env))[0] == "status"
    assert world.verify(env).status == "suspended"
    world.ledger.commit([status_tx("demo", edu, cid, "valid", "cleared", T0 + 13)], T0 + 13)
    assert world.verify(env).verified
    world.ledger.commit([status_tx("demo", edu, cid, "revoked", "fraud", T0 + 14)], T0 + 14)
    assert world.verify(env).status == "revoked"


def test_no_status_list_is_undetermined_not_valid(world: World) -> None:
    bundle, _ = world.issue()
    report = world.verify(present(bundle), lists=lambda _: None)
    assert report.status == "undetermined"
    assert not report.verified


@pytest.mark.parametrize(("mutate", "step"), [
    (lambda r: replace(r, nonce="another-nonce"), "sd_jwt"),
    (lambda r: replace(r, audience="https://other.example"), "sd_jwt"),
    (lambda r: replace(r, credential_type="residence"), "requested_claims"),
    (lambda r: replace(r, claims=(*r.claims, "holder_name")), "requested_claims"),
])
def test_request_binding(world: World, mutate: Callable[[Request], Request], step: str) -> None:
    bundle, _ = world.issue()
    assert _failed(world.verify(present(bundle), request=mutate(REQ)))[0] == step


def test_stale_key_binding(world: World) -> None:
    bundle, _ = world.issue()
    assert _failed(world.verify(present(bundle, iat=T0 + 20), now=T0 + 20 + 3600))[0] == "sd_jwt"


def _snapshot(world: World, now: int, node_keys: dict[str, PrivateKey] | None = None) -> bytes:
    """A snapshot of ``world``'s store at ``now``: its head's checkpoint and its lists signed
    by ``node_keys`` (default: reg's and edu's node keys)."""
    store = world.ledger.store
    keys = node_keys or {a: world.agencies[a].node_key for a in ("reg", "edu")}
    assert store.head is not None
    store.put_checkpoint(store.head.log_size, sign_checkpoint(
        "demo", store.head, list(keys.items())).to_text().encode())
    return export_snapshot(store, now, node_keys=keys)


def test_a_credential_in_a_later_status_list_verifies_online_and_offline(
        world: World) -> None:
    """Status index 2 * STATUS_LIST_SIZE + 9 is entry 9 of the issuer's third list of the type
    (ADR 55): the credential says so (``uri`` ending ``:2``, ``idx`` 9), and a verifier with
    the node's lists and one with a snapshot both read its status there."""
    bundle, cid = world.issue(status_index=2 * STATUS_LIST_SIZE + 9)
    payload = sdjwt.parse_jws_payload(bundle.sd_jwt.split("~", 1)[0])
    st = payload["status"]["status_list"]
    assert st == {"idx": 9, "uri": status_list_uri("demo", "edu", "degree", 2)}
    env = present(bundle)
    store = world.ledger.store

    def snapshot(now: int) -> Callable[[str], StatusList | None]:
        return load_snapshot(_snapshot(world, now)).status_lists

    cache = StatusListCache(store)
    for lists in (cache.get, snapshot(T0 + 20)):
        report = world.verify(env, lists=lists)
        assert report.verified and report.status == "valid", report.to_json()
    world.ledger.commit([status_tx("demo", world.agencies["edu"], cid, "revoked", "fraud",
                                   T0 + 21)], T0 + 21)
    for lists in (cache.get, snapshot(T0 + 22)):
        assert world.verify(env, now=T0 + 22, lists=lists).status == "revoked"


def _rotate_edus_node_key(world: World, at: int) -> PrivateKey:
    """edu's node key is replaced at ``at`` (planned at T0 + 15); the new key."""
    reg, edu = world.agencies["reg"], world.agencies["edu"]
    new = PrivateKey(bytes(range(7, 39)))
    world.ledger.govern("rotate_key", {"agency": "edu", "role": "node",
                                       "new_key": new.public.raw, "at": at}, [reg, edu], T0 + 15)
    return new


def test_a_snapshot_is_not_signed_with_a_node_key_rotated_out(world: World) -> None:
    """export_snapshot refuses a node key that is no longer the agency's at ``now`` (rotated
    out): a verifier would refuse its lists, and every credential of the agency would read as
    undetermined offline with nothing said when the snapshot was made."""
    world.issue()
    reg, edu = world.agencies["reg"], world.agencies["edu"]
    at = T0 + 100
    new = _rotate_edus_node_key(world, at)
    uri = status_list_uri("demo", "edu", "degree")
    old_keys = {"reg": reg.node_key, "edu": edu.node_key}
    assert load_snapshot(_snapshot(world, at - 50, old_keys)).status_lists(uri) is not None
    with pytest.raises(SnapshotError, match="not its valid node key"):
        _snapshot(world, at + 50, old_keys)
    with pytest.raises(SnapshotError, match="not its valid node key"):
        _snapshot(world, at - 50, {**old_keys, "edu": new})  # not valid yet
    fresh = load_snapshot(_snapshot(world, at + 50, {**old_keys, "edu": new}))
    assert fresh.status_lists(uri) is not None


def _with_list_token(blob: bytes, uri: str, token: str) -> bytes:
    """``blob`` with the token of the list at ``uri`` replaced (snapshots are canonical msgpack)."""
    snap = codec.decode(blob, max_size=1 << 26)
    items = [i for i in snap["status_lists"]
             if status_list_uri("demo", i["issuer"], i["type"], i.get("list", 0)) == uri]
    assert len(items) == 1
    items[0]["token"] = token
    return codec.encode(snap)


def test_a_snapshots_list_counts_only_under_its_agencys_current_node_key(world: World) -> None:
    """A list in a snapshot signed by another agency's node key, by the agency's node key
    rotated out before the snapshot, or by its issuer key, is undetermined (None), whatever
    it says; the same list signed by its current node key is read."""
    world.issue()
    reg, edu = world.agencies["reg"], world.agencies["edu"]
    at = T0 + 100
    new = _rotate_edus_node_key(world, at)
    now = at + 50
    blob = _snapshot(world, now, {"reg": reg.node_key, "edu": new})
    uri = status_list_uri("demo", "edu", "degree")
    said = load_snapshot(blob).status_list(uri)
    revoked = said.with_status(0, 1)  # whatever it says
    for key in (reg.node_key, edu.node_key, edu.issuer_key, new):
        token = make_token(revoked, sub=uri, iat=now, exp=None, ttl=None, key=key,
                           kid=key.kid.hex())
        got = load_snapshot(_with_list_token(blob, uri, token)).status_lists(uri)
        if key is new:
            assert got == revoked
        else:
            assert got is None, key.kid.hex()


def test_a_merged_snapshot_keeps_the_newer_of_two_lists_for_one_uri(world: World) -> None:
    """Two parts carry edu's list, one made before a revocation and one after: the merged
    snapshot keeps the newer, in whichever order the parts come."""
    bundle, cid = world.issue()
    older = _snapshot(world, T0 + 20)
    world.ledger.commit([status_tx("demo", world.agencies["edu"], cid, "revoked", "fraud",
                                   T0 + 21)], T0 + 21)
    newer = _snapshot(world, T0 + 40)
    env = present(bundle)
    assert world.verify(env, lists=load_snapshot(older).status_lists).status == "valid"
    for parts in ([older, newer], [newer, older]):
        merged, _ = merge_snapshots(parts)
        snap = load_snapshot(merged)
        assert snap.fetched_at == T0 + 20
        assert world.verify(env, lists=snap.status_lists).status == "revoked"


def test_a_merge_names_the_agencies_it_lacks_unless_they_were_asked(world: World) -> None:
    """reg and tax have node keys and have issued nothing: a merge not told whom it asked
    names both as lacking; one told that their nodes were asked (and brought no list) does
    not, and names only an agency it was not told of."""
    world.issue()
    part = _snapshot(world, T0 + 20)
    _, missing = merge_snapshots([part])
    assert sorted(missing) == ["reg", "tax"] and "no status list of 'tax'" in missing["tax"]
    _, missing = merge_snapshots([part], asked=["reg", "edu", "tax"])
    assert missing == {}
    _, missing = merge_snapshots([part], asked=["reg", "edu"])
    assert list(missing) == ["tax"] and "was not asked" in missing["tax"]


def test_a_snapshot_whose_checkpoint_is_not_final_is_refused(world: World) -> None:
    """The checkpoint in a snapshot must be final under the snapshot's registry (quorum 2 of
    the node keys): signed by one node, or by one node and another agency's issuer key, the
    snapshot is refused."""
    world.issue()
    snap = codec.decode(_snapshot(world, T0 + 20), max_size=1 << 26)
    head = world.ledger.store.head
    assert head is not None
    reg, edu = world.agencies["reg"], world.agencies["edu"]
    for signers in ([("reg", reg.node_key)], [("reg", reg.node_key), ("edu", edu.issuer_key)]):
        snap["checkpoint"] = sign_checkpoint("demo", head, signers).to_text()
        with pytest.raises(SnapshotError, match="checkpoint is not final"):
            load_snapshot(codec.encode(snap))


@pytest.mark.parametrize(("change", "message"), [
    (lambda snap: {**snap, "log_size": snap["log_size"] - 1}, "ahead of its log size"),
    (lambda snap: {**snap, "status_lists": snap["status_lists"] * 2}, "two lists for"),
], ids=["checkpoint past the log size", "a list twice"])
def test_an_inconsistent_snapshot_is_refused(world: World, change: Callable[[Any], Any],
                                             message: str) -> None:
    world.issue()
    snap = codec.decode(_snapshot(world, T0 + 20), max_size=1 << 26)
    uri = status_list_uri("demo", "edu", "degree")
    assert load_snapshot(codec.encode(snap)).status_lists(uri) is not None
    with pytest.raises(SnapshotError, match=message):
        load_snapshot(codec.encode(change(snap)))


def test_a_credential_naming_another_status_list_than_its_anchor_is_refused(
        world: World) -> None:
    """A credential that says entry 9 of the first list, anchored as entry 9 of the second
    (index STATUS_LIST_SIZE + 9): its status would be read from another credential's entry."""
    edu = world.agencies["edu"]
    cred = issue_credential(registry=world.ledger.registry, agency="edu",
                            issuer_key=edu.issuer_key, kind="degree", claims=CLAIMS,
                            holder_jwk=sdjwt.jwk_from_ed25519(HOLDER.public.raw), now=T0 + 10,
                            valid_for=30 * DAY, status_index=9)
    anchor = issue_tx("demo", edu, cred.credential_id, "degree", STATUS_LIST_SIZE + 9,
                      T0 + 10, T0 + 10 + 30 * DAY, T0 + 10)
    r = world.ledger.commit([anchor], T0 + 10)
    assert not r.rejected, r.rejected
    bundle = world.bundle(cred.sd_jwt.serialize(), r.accepted[0][1])
    name, detail = _failed(world.verify(present(bundle)))
    assert name == "requested_claims"  # the step after anchor_binding: the claims' checks
    assert "status list is not its issuer's list for its type and its anchor's" in detail


def test_anchor_of_another_credential_is_refused(world: World) -> None:
    bundle, _ = world.issue()
    other, _ = world.issue(now=T0 + 11)
    swapped = Bundle(other.anchor, other.leaf_index, other.proof, other.checkpoint,
                     bundle.sd_jwt)
    name, detail = _failed(world.verify(present(swapped)))
    assert name == "anchor_binding"
    assert "different credential" in detail


def test_tampered_proof_is_refused(world: World) -> None:
    bundle, _ = world.issue()
    bad = replace(bundle, proof=(bytes(32), *bundle.proof[1:]))
    assert _failed(world.verify(present(bad)))[0] == "anchor_inclusion"


def test_key_invalidated_before_issuance(world: World) -> None:
    bundle, _ = world.issue(now=T0 + 10)
    reg, edu = world.agencies["reg"], world.agencies["edu"]
    world.ledger.govern("invalidate_key", {"kid": edu.issuer_key.kid, "from": T0 + 5},
                        [reg, edu], T0 + 15)
    name, detail = _failed(world.verify(present(bundle)))
    assert name == "issuer_authority"
    assert "not a valid issuer key" in detail


def test_a_type_granted_after_the_credentials_valid_from_is_refused(world: World) -> None:
    """The ledger checks a grant at the block's time, and takes a ``valid_from`` up to
    MAX_BACKDATE earlier: a credential dated before its agency's grant of the type anchors,
    and only the verifier's check at issuance time refuses it (no test broke without it)."""
    from credworld import DEGREE

    from ledger.credentials import status_list
    from ledger.state import MAX_BACKDATE

    reg, edu = world.agencies["reg"], world.agencies["edu"]
    world.ledger.govern("register_type", {"type": {**DEGREE, "id": "licence"}}, [reg, edu],
                        T0 + 3)
    granted = T0 + 100
    world.ledger.govern("grant", {"agency": "edu", "type": "licence", "from": granted,
                                  "until": T0 + 86_400}, [reg, edu], T0 + 4)

    class Careless:  # an issuing tool without issue_credential's own check of the grant
        def __getattr__(self, name: str) -> Any:
            return getattr(world.ledger.registry, name)

        def grant_covers(self, *_: object) -> bool:
            return True

    def anchored(valid_from: int, block_time: int) -> Bundle:
        cred = issue_credential(registry=cast(Any, Careless()), agency="edu",
                                issuer_key=edu.issuer_key, kind="licence", claims=CLAIMS,
                                holder_jwk=sdjwt.jwk_from_ed25519(HOLDER.public.raw),
                                now=valid_from, valid_for=86_400)
        r = world.ledger.commit([cred.anchor], block_time)
        assert not r.rejected, r.rejected  # the ledger takes both
        return world.bundle(cred.sd_jwt.serialize(), r.accepted[0][1])

    early = anchored(granted - 60, granted + 10)
    assert granted + 10 - (granted - 60) <= MAX_BACKDATE
    on_time = anchored(granted, granted + 11)
    lst = status_list(world.ledger.store.status_entries("edu", "licence"))
    uri = status_list_uri("demo", "edu", "licence")
    request = replace(REQ, credential_type="licence")
    now = granted + 20

    def verify(bundle: Bundle) -> Report:
        return world.verify(present(bundle, request, iat=now), request, now=now,
                            lists=lambda u: lst if u == uri else None)

    name, detail = _failed(verify(early))
    assert name == "issuer_authority"
    assert f"'edu' was not granted 'licence' at issuance time {granted - 60}" in detail
    assert verify(on_time).verified


def test_an_anchor_signed_by_another_agencys_issuer_key_is_refused(world: World) -> None:
    """The ledger refuses such an anchor (issuer_mismatch); the verifier refuses it too, on
    its own, should a registry snapshot and a log ever disagree."""
    from ledger.errors import LedgerError
    from ledger.network import issue_tx
    from ledger.presentation import issuer_jwk_at_issuance

    reg, edu = world.agencies["reg"], world.agencies["edu"]
    world.ledger.govern("grant", {"agency": "reg", "type": "degree", "from": T0,
                                  "until": T0 + 86_400}, [reg, edu], T0 + 3)
    registry = world.ledger.registry
    own = issue_tx("demo", reg, bytes(32), "degree", 7, T0 + 10, T0 + 86_000, T0 + 10)
    assert issuer_jwk_at_issuance(own, registry)  # reg's own key: its JWK
    forged = issue_tx("demo", reg, bytes(32), "degree", 7, T0 + 10, T0 + 86_000, T0 + 10,
                      key=edu.issuer_key)
    with pytest.raises(LedgerError, match="was not a valid issuer key of 'reg'"):
        issuer_jwk_at_issuance(forged, registry)


def test_a_checkpoint_is_final_only_while_its_signers_keys_are_valid(world: World) -> None:
    """One Verifier (a desk's, kept between presentations) must see a planned node-key
    rotation take effect: it used to remember "final" for the rest of the hour."""
    from ledger.keys import PrivateKey
    from ledger.presentation import Verifier

    bundle, _ = world.issue()
    reg, edu = world.agencies["reg"], world.agencies["edu"]
    at = T0 + 100
    assert (at + 50) // 3600 == T0 // 3600  # within one hour: the old cache's bucket
    world.ledger.govern("rotate_key", {"agency": "edu", "role": "node",
                                       "new_key": PrivateKey.generate().public.raw, "at": at},
                        [reg, edu], T0 + 15)
    desk = Verifier(world.ledger.registry, world.lists())
    assert desk.verify(present(bundle), REQ, now=T0 + 20).verified
    late = desk.verify(present(bundle, iat=at + 50), REQ, now=at + 50)
    name, detail = _failed(late)
    assert name == "checkpoint" and "edu" in detail


def test_one_verifier_shared_by_threads_evicts_safely(world: World) -> None:
    """A node shares one Verifier among its worker threads. Two threads evicting at once
    both picked the same oldest checkpoint and the second's pop raised KeyError (a 500).
    Here the pop of the first waits until the second could reach its own: without the lock
    it does, and pops the same text."""
    import contextlib
    import threading

    from ledger.presentation import Verifier

    texts = [world.issue(now=T0 + 10 + i)[0].checkpoint for i in range(4)]
    desk = Verifier(world.ledger.registry, world.lists(), cache_size=2)
    for text in texts[:2]:
        desk._checkpoint(text, T0 + 20)
    both = threading.Barrier(2)

    class Slow(dict[str, Any]):
        def pop(self, key: str, *default: Any) -> Any:
            with contextlib.suppress(threading.BrokenBarrierError):
                both.wait(timeout=1.0)  # the other thread, if it can get here too
            return super().pop(key, *default)

    desk._final = Slow(desk._final)
    failed: list[BaseException] = []

    def check(text: str) -> None:
        try:
            desk._checkpoint(text, T0 + 20)
        except BaseException as e:
            failed.append(e)

    threads = [threading.Thread(target=check, args=(t,)) for t in texts[2:]]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert failed == []
    assert set(desk._final) == set(texts[2:])


def test_garbage_envelope(world: World) -> None:
    assert _failed(world.verify(b"\x92\x01"))[0] == "envelope"


@pytest.mark.parametrize(("field", "value"), [
    ("audience", "https://desk.example\n  disclosed: district"),  # a fake preview line
    ("nonce", "n-\x1b[2K\x1b[8m"),  # erase the line, then hide what follows
    ("type", "residence\u202e"),  # a bidi override
    ("claims", ["district", ""]),
    ("claims", ["district\r"]),
])
def test_a_request_with_control_characters_or_empty_names_is_refused(field: str,
                                                                      value: object) -> None:
    good = {"nonce": "n-1", "audience": "https://desk.example", "type": "residence",
            "claims": ["district"]}
    assert Request.from_json(good).claims == ("district",)
    with pytest.raises(DecodeError, match="request"):
        Request.from_json({**good, field: value})


def test_printable_shows_control_characters_as_escapes() -> None:
    assert printable("Wang Fang 王芳") == "Wang Fang 王芳"
    assert printable("Eve\x1b[2K\x1b[32mVERIFIED") == "Eve\\x1b[2K\\x1b[32mVERIFIED"
    assert printable("a\nb\u202ec\U000e0041") == "a\\x0ab\\u202ec\\U000e0041"
    assert "\x1b" not in printable("".join(map(chr, range(0x110))))
    # C1 controls as \xNN; invisible characters Python calls printable (the combining grapheme
    # joiner, the last variation selector) are escaped too, not shown as nothing
    assert printable("a\x85b\x9b") == "a\\x85b\\x9b"
    assert printable("a\u034fb") == "a\\u034fb"
    assert printable("长盛\ufe0f") == "长盛\\ufe0f"


@pytest.mark.parametrize(("body", "where"), [
    ({"type": "t" * 201}, "request.type"),
    ({"claims": [f"c{i}" for i in range(65)]}, "request.claims"),
    ({"claims": ["c" * 101]}, r"request.claims\[0\]"),
    ({"audience": "a" * 513}, "request.audience"),
])
def test_requests_have_bounded_fields(body: dict[str, Any], where: str) -> None:
    """A request becomes a QR code and a wallet's prompt: no field may be unbounded."""
    fields = {"nonce": "n-1", "audience": "https://desk.example", "type": "residence",
              "claims": ["district"], **body}
    with pytest.raises(DecodeError, match=where):
        Request.from_json(fields)


class _LedgerCopy:
    """What the approval check reads of a store: its head's size and committed transactions."""

    def __init__(self, size: int, txs: list[Any]) -> None:
        self.head = type("Head", (), {"log_size": size})()
        self._txs = {tx.txid: tx for tx in txs}

    def tx(self, txid: bytes) -> Any:
        return self._txs.get(txid)


def test_an_approval_credential_must_name_its_issuers_decision(world: World) -> None:
    """Every way an approval credential can disagree with the decision it names (ADR 43)."""
    from ledger.network import issue_tx
    from ledger.presentation import _decision_mismatch
    from ledger.tx import make_tx

    edu, reg = world.agencies["edu"], world.agencies["reg"]
    decided = make_tx("demo", "approval", {
        "service": "degree-recognition", "rule_hash": bytes(32), "decision": "rejected",
        "path": "standard", "reasons": ["not_listed"], "evidence": bytes(32), "ts": T0},
        [edu.issuer_key])
    by_edu = issue_tx("demo", edu, bytes(31) + b"\x01", "approval", 1, T0, T0 + 99, T0)
    by_reg = issue_tx("demo", reg, bytes(31) + b"\x02", "approval", 2, T0, T0 + 99, T0)
    ledger: Any = _LedgerCopy(100, [decided])
    claims = {"service": "degree-recognition", "decision": "rejected",
              "approval_tx": decided.txid.hex()}

    def why(anchor: Any = by_edu, leaf: int = 7, copy: Any = ledger, **changes: Any) -> str:
        return _decision_mismatch({**claims, **changes}, anchor, leaf, copy,
                                  world.ledger.registry) or "backed"

    assert why() == "backed"
    assert "says decision 'approved'" in why(decision="approved")  # a rejection shown as yes
    assert "signed by 'edu', the credential by 'reg'" in why(anchor=by_reg)
    assert "is no approval transaction" in why(approval_tx="ab" * 32)
    # a transaction on the ledger, of the issuer's, that is no decision (the credential's own
    # anchor): not one either
    assert "is no approval transaction" in why(approval_tx=by_edu.txid.hex(),
                                               copy=_LedgerCopy(100, [decided, by_edu]))
    assert "approval_tx is not disclosed" in why(approval_tx=None)
    bare = {k: v for k, v in claims.items() if k != "decision"}
    assert "decision is not disclosed" in (_decision_mismatch(
        bare, by_edu, 7, ledger, world.ledger.registry) or "")
    assert "has not seen the credential" in why(leaf=100)  # an old copy: not a forgery


def test_an_approval_credential_s_path_reasons_and_rule_are_its_decision_s(world: World) -> None:
    """A credential naming a real standard-path decision but saying "fast_track" (or other
    reasons, or another rule version) is refused when it discloses that claim: the verifier
    showed it as checked. An agency could so hand a fast track to an applicant whose credit
    did not allow it (helper round 20A)."""
    from ledger.network import issue_tx
    from ledger.presentation import _decision_mismatch
    from ledger.timetext import utc_text
    from ledger.tx import make_tx

    edu = world.agencies["edu"]
    decided = make_tx("demo", "approval", {
        "service": "degree-recognition", "rule_hash": bytes(range(32)), "decision": "approved",
        "path": "standard", "reasons": ["listed", "checked"], "evidence": bytes(32),
        "ts": T0}, [edu.issuer_key])
    anchor = issue_tx("demo", edu, bytes(31) + b"\x01", "approval", 1, T0, T0 + 99, T0)
    claims = {"service": "degree-recognition", "decision": "approved",
              "approval_tx": decided.txid.hex(), "path": "standard",
              "reasons": "listed,checked", "rule_version": bytes(range(32)).hex()}

    def why(**changes: Any) -> str:
        return _decision_mismatch({**claims, **changes}, anchor, 7,
                                  _LedgerCopy(100, [decided]), world.ledger.registry) or "backed"

    assert why() == "backed"
    assert "says path 'fast_track'" in why(path="fast_track")
    assert "says reasons 'listed'" in why(reasons="listed")
    assert "says rule_version" in why(rule_version="ab" * 32)
    # the day it was decided: the decision's own, in some agency's calendar (UTC-12 to UTC+14)
    day = utc_text(T0, "%Y-%m-%d")
    for near in (T0 - 86400, T0, T0 + 86400):
        assert why(decided_on=utc_text(near, "%Y-%m-%d")) == "backed", near
    assert "says decided_on '2020-01-01'" in why(decided_on="2020-01-01")  # backdated
    assert "says decided_on" in why(decided_on=utc_text(T0 + 2 * 86400, "%Y-%m-%d"))
    assert "says decided_on" in why(decided_on=day + "x")
    # not disclosed: not shown, so nothing to check
    bare = {k: v for k, v in claims.items() if k in ("service", "decision", "approval_tx")}
    assert _decision_mismatch(bare, anchor, 7, _LedgerCopy(100, [decided]),
                              world.ledger.registry) is None


# -- found by a mutation round of the node, the verifier and the codec (ADR 54) ----------------

def test_a_bundle_over_128_kib_is_refused_though_each_field_is_within_its_own_limit() -> None:
    """Bundle.from_bytes bounds the whole bundle (4 x MAX_ENVELOPE, 128 KiB), not only each
    field: an anchor of 60 kB and an SD-JWT of 71 kB each pass their own limit (64 KiB, 128 KiB)
    but together are over it. One byte under the bound, the same shape is read."""
    from ledger.presentation import MAX_ENVELOPE

    def bundle_of(total: int) -> bytes:
        base = Bundle(b"a" * 60_000, 0, (), "c", "").to_bytes()
        sd_jwt = "x" * (total - len(base) - 3)  # a first guess
        data = Bundle(b"a" * 60_000, 0, (), "c", sd_jwt).to_bytes()
        data = Bundle(b"a" * 60_000, 0, (), "c", "x" * (len(sd_jwt) + total - len(data))  # exact
                      ).to_bytes()
        assert len(data) == total
        return data

    limit = MAX_ENVELOPE * 4
    assert Bundle.from_bytes(bundle_of(limit)).sd_jwt.startswith("x")
    for total in (limit + 1, limit + 10_000, limit + 80_000):
        with pytest.raises(DecodeError, match="byte limit"):
            Bundle.from_bytes(bundle_of(total))


def test_a_ledger_copy_behind_the_credential_calls_its_status_undetermined(
        world: World, make_ledger: Callable[..., LedgerHarness],
        agencies: dict[str, Agency]) -> None:
    """A verifier with the ledger (a node's desk, ``ledger verify --data``) whose copy has not
    reached the presented credential's leaf (a node cut off or catching up, an old data
    folder) read its status from lists that cannot know it: the entry of an index no anchor
    had taken is 0, and a credential issued and revoked where the copy has not yet been read
    "valid". Its status is undetermined there, as offline (``status_as_of``)."""
    from ledger.offline import store_status_list
    from ledger.presentation import verify_envelope

    copy = make_ledger(list(agencies.values()), 2, T0, name="copy")
    World(copy, agencies)  # the same governance, block for block
    shared = issue_credential(registry=world.ledger.registry, agency="edu",
                              issuer_key=agencies["edu"].issuer_key, kind="degree",
                              claims=CLAIMS, holder_jwk=sdjwt.jwk_from_ed25519(
                                  HOLDER.public.raw), now=T0 + 5, valid_for=30 * DAY)
    for ledger in (world.ledger, copy):  # a credential both have: the copy has the list
        assert not ledger.commit([shared.anchor], T0 + 5).rejected
    bundle, cid = world.issue()  # past the copy's head
    world.ledger.commit([status_tx("demo", agencies["edu"], cid, "revoked", "fraud", T0 + 12)],
                        T0 + 12)
    assert copy.store.head is not None and bundle.leaf_index >= copy.store.head.log_size

    def at(ledger: LedgerHarness) -> Report:
        store = ledger.store
        return verify_envelope(present(bundle), REQ, registry=store.registry, now=T0 + 20,
                               status_lists=lambda uri: store_status_list(store, uri),
                               ledger=store)

    assert at(world.ledger).status == "revoked"
    behind = at(copy)
    assert behind.status == "undetermined", behind.to_json()
    assert not behind.verified
    assert behind.checks[-1].name == "status" and not behind.checks[-1].ok
    assert "has not seen the credential" in behind.checks[-1].detail


def test_a_merge_refuses_a_list_whose_token_header_nests_too_deeply(world: World) -> None:
    """A node's part whose list token has a header of 3,000 nested arrays (untrusted until its
    signature is checked) stopped the merge with a RecursionError and a traceback, where any
    other unreadable token is named as refused and the other parts' lists are kept; and a
    snapshot holding such a token calls the list's status undetermined."""
    import base64

    world.issue()
    part = _snapshot(world, T0 + 20)
    uri = status_list_uri("demo", "edu", "degree")
    # deeper than the recursion limit of any process here (2,500 once celpy is imported),
    # within a header's 4,096 characters
    deep = base64.urlsafe_b64encode(b"[" * 3000).rstrip(b"=").decode()
    bad = _with_list_token(part, uri, f"{deep}.e30.AA")
    _, missing = merge_snapshots([bad])
    assert "nested too deeply" in missing[uri], missing
    blob, missing = merge_snapshots([bad, part])  # the good part's list is kept
    assert uri not in missing and load_snapshot(blob).status_lists(uri) is not None
    assert load_snapshot(bad).status_lists(uri) is None


def test_a_part_replaying_an_older_token_of_a_list_does_not_undo_a_revocation(
        world: World) -> None:
    """A node's part is untrusted (a lying agency node, or a man in the middle): one carrying
    edu's genuine list token from before a revocation, in a part dated after edu's own, was
    kept by the merge (the first offer that verified, in the parts' order by their unsigned
    ``fetched_at``), and the revoked credential said valid offline. The list signed last
    counts; a token signed well before the merged snapshot's time is refused alone."""
    bundle, cid = world.issue()
    uri = status_list_uri("demo", "edu", "degree")
    older = _snapshot(world, T0 + 20)
    old_token = load_snapshot(older).tokens[uri][1]
    world.ledger.commit([status_tx("demo", world.agencies["edu"], cid, "revoked", "fraud",
                                   T0 + 200)], T0 + 200)
    honest = _snapshot(world, T0 + 220)
    replay = codec.decode(_with_list_token(_snapshot(world, T0 + 230), uri, old_token),
                          max_size=1 << 26)
    replay["fetched_at"] = T0 + 230
    evil = codec.encode(replay)
    env = present(bundle)
    for parts in ([honest, evil], [evil, honest]):
        merged, missing = merge_snapshots(parts)
        assert uri not in missing
        assert world.verify(env, lists=load_snapshot(merged).status_lists).status == "revoked"
    merged, missing = merge_snapshots([evil])  # edu's own node not asked
    assert "signed at" in missing[uri], missing
    assert world.verify(env, lists=load_snapshot(merged).status_lists).status == "undetermined"


def test_a_single_snapshot_with_an_older_token_spliced_in_does_not_undo_a_revocation(
        world: World) -> None:
    """A snapshot read alone (``ledger verify --snapshot``, no merge) with edu's genuine list
    token from a snapshot made before a revocation spliced into one made after it: the lists
    carry no ``exp`` or ``ttl``, so the old token verified at the snapshot's time and the
    revoked credential said valid, under the later snapshot's (fresh) age. A token signed more
    than MERGE_SPREAD before the snapshot's time is refused: the status is undetermined."""
    bundle, cid = world.issue()
    uri = status_list_uri("demo", "edu", "degree")
    old_token = load_snapshot(_snapshot(world, T0 + 20)).tokens[uri][1]
    world.ledger.commit([status_tx("demo", world.agencies["edu"], cid, "revoked", "fraud",
                                   T0 + 200)], T0 + 200)
    honest = _snapshot(world, T0 + 220)
    env = present(bundle)
    assert world.verify(env, lists=load_snapshot(honest).status_lists).status == "revoked"
    spliced = load_snapshot(_with_list_token(honest, uri, old_token))
    with pytest.raises(StatusListError, match="signed at"):
        spliced.status_list(uri)
    assert world.verify(env, lists=spliced.status_lists).status == "undetermined"


def test_an_old_snapshot_redated_to_look_fresh_gives_no_status(world: World) -> None:
    """``fetched_at`` is not signed: a whole snapshot from before a revocation, re-dated to
    after it (so the age a verifier is shown looks fresh), said valid. Its tokens' signed
    ``iat`` now bounds it: the lists are refused and the status is undetermined."""
    bundle, cid = world.issue()
    uri = status_list_uri("demo", "edu", "degree")
    old = codec.decode(_snapshot(world, T0 + 20), max_size=1 << 26)
    world.ledger.commit([status_tx("demo", world.agencies["edu"], cid, "revoked", "fraud",
                                   T0 + 200)], T0 + 200)
    old["fetched_at"] = T0 + 220
    redated = load_snapshot(codec.encode(old))
    assert redated.age(T0 + 230) == 10
    with pytest.raises(StatusListError, match="signed at"):
        redated.status_list(uri)
    assert world.verify(present(bundle), lists=redated.status_lists).status == "undetermined"
