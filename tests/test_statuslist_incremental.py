"""The node's status lists are updated per block (ADR 23), never rebuilt per request: the
incremental lists must equal a full rebuild from the store, byte for byte, at every head."""

from __future__ import annotations

import hashlib
import random
import threading
from collections.abc import Callable
from typing import Any

from conftest import DAY, T0

from ledger.credentials import STATUS_LIST_SIZE, STATUS_LISTS, status_list_uri
from ledger.network import Agency, issue_tx, status_tx
from ledger.offline import StatusListCache, store_status_list

TYPES = ("degree", "diploma")


def _setup(ledger: Any, agencies: dict[str, Agency]) -> None:
    signers = [agencies["reg"], agencies["edu"]]
    for kind in TYPES:
        spec = {"id": kind, "title": kind.title(), "claims": {"level": "string"}, "derived": {}}
        ledger.govern("register_type", {"type": spec}, signers, T0 + 1)
        for who in ("edu", "tax"):
            ledger.govern("grant", {"agency": who, "type": kind, "from": T0,
                                    "until": T0 + 1000 * DAY}, signers, T0 + 1)


def _same(cache: StatusListCache, ledger: Any, uris: list[str]) -> None:
    for uri in uris:
        full = store_status_list(ledger.store, uri)
        got = cache.get(uri)
        if full is None:
            assert got is None, uri
        else:
            assert got is not None, uri
            assert got.data == full.data, uri


def test_incremental_lists_equal_full_rebuild(ledger: Any, agencies: dict[str, Agency]) -> None:
    _setup(ledger, agencies)
    rng = random.Random(8)
    issuers = [agencies["edu"], agencies["tax"]]
    # three lists of each issuer and type (ADR 55): an index's list is index // STATUS_LIST_SIZE
    uris = [status_list_uri(ledger.net, a.id, k, n) for a in issuers for k in TYPES
            for n in range(3)]
    uris.append(status_list_uri(ledger.net, "reg", "degree"))  # never anchored: None
    cache = StatusListCache(ledger.store)
    small = StatusListCache(ledger.store, rebuild_after=40)  # exercises the rescan path
    _same(cache, ledger, uris[:1])  # one list read before anything is anchored
    issued: list[tuple[Agency, bytes, str]] = []  # (issuer, credential id, status)
    used: set[tuple[str, str, int]] = set()
    n = 0
    for block in range(12):
        t = T0 + 10 + block
        txs = []
        for _ in range(rng.randrange(5, 30)):
            a, kind = rng.choice(issuers), rng.choice(TYPES)
            index = rng.randrange(3 * STATUS_LIST_SIZE)
            if (a.id, kind, index) in used:
                continue
            used.add((a.id, kind, index))
            cid = hashlib.sha256(b"incremental-%d" % n).digest()
            n += 1
            txs.append(issue_tx(ledger.net, a, cid, kind, index, T0, T0 + 900 * DAY, t))
            issued.append((a, cid, "valid"))
        # random legal status changes of earlier credentials (some twice in one block)
        for _ in range(rng.randrange(0, 15)):
            if not issued:
                break
            k = rng.randrange(len(issued))
            a, cid, status = issued[k]
            nxt = {"valid": ["suspended", "revoked"], "suspended": ["valid", "revoked"],
                   "revoked": []}[status]
            if not nxt:
                continue
            new = rng.choice(nxt)
            txs.append(status_tx(ledger.net, a, cid, new, "test", t + len(txs)))
            issued[k] = (a, cid, new)
        r = ledger.commit(txs, t)
        assert not r.rejected, [(e.code, e.message) for _, e in r.rejected]
        if block % 3 != 1:  # skip some heads: a later request catches up several blocks
            _same(cache, ledger, uris[:2 + block // 4])  # lists join the cache over time
            _same(small, ledger, uris)
    _same(cache, ledger, uris)
    assert cache.blocks_applied > 0  # it really caught up block by block
    empty = [u for u in uris if store_status_list(ledger.store, u) is None]
    assert empty  # reg's degree list: never anchored
    # each list with credentials was read from the store once only; an empty one is not
    # kept (a seek when asked again), review of ADR 55
    reads = cache.full_reads
    _same(cache, ledger, uris)
    assert cache.full_reads - reads == len(empty)
    assert len(cache._bufs) == len(uris) - len(empty)
    assert small.full_reads > len(uris)


def test_a_credential_past_the_first_list_is_in_the_next(ledger: Any,
                                                         agencies: dict[str, Agency]) -> None:
    """Status index STATUS_LIST_SIZE + 77 is entry 77 of list 1 (ADR 55), in a full read and
    in the cache alike; list 0's entry 77 is another credential's; the store names the lists
    that hold credentials."""
    _setup(ledger, agencies)
    edu = agencies["edu"]
    first, second = hashlib.sha256(b"first").digest(), hashlib.sha256(b"second").digest()
    ledger.commit([issue_tx(ledger.net, edu, first, "degree", 77, T0, T0 + DAY, T0 + 5),
                   issue_tx(ledger.net, edu, second, "degree", STATUS_LIST_SIZE + 77, T0,
                            T0 + DAY, T0 + 5)], T0 + 5)
    cache = StatusListCache(ledger.store)
    uri0 = status_list_uri(ledger.net, "edu", "degree")
    uri1 = status_list_uri(ledger.net, "edu", "degree", 1)
    assert uri1 == uri0 + ":1"
    assert cache.get(uri1) is not None  # read before the change: the change is caught up
    ledger.commit([status_tx(ledger.net, edu, second, "revoked", "test", T0 + 6)], T0 + 6)
    for lists in (cache.get, lambda uri: store_status_list(ledger.store, uri)):
        lst0, lst1 = lists(uri0), lists(uri1)
        assert lst0 is not None and lst1 is not None
        assert (lst0.get(77), lst1.get(77)) == (0, 1)
        assert lists(status_list_uri(ledger.net, "edu", "degree", 2)) is None
    assert ledger.store.status_lists("edu", "degree") == [0, 1]
    assert ledger.store.status_lists("edu", "diploma") == []
    assert sorted(ledger.store.status_values("edu", "degree", 1)) == \
        [(STATUS_LIST_SIZE + 77, "revoked")]
    assert sorted(ledger.store.status_entries("edu", "degree", 0)) == [(77, "valid")]


def test_asking_for_every_empty_list_keeps_nothing(ledger: Any,
                                                  agencies: dict[str, Agency]) -> None:
    """Anyone may ask a node for each of a type's STATUS_LISTS lists: an empty one answers
    None and is not kept (it kept a 256 KiB buffer per list asked for: 16 MiB a type)."""
    _setup(ledger, agencies)
    edu = agencies["edu"]
    ledger.commit([issue_tx(ledger.net, edu, hashlib.sha256(b"one").digest(), "degree", 5,
                            T0, T0 + DAY, T0 + 5)], T0 + 5)
    cache = StatusListCache(ledger.store)
    got = [cache.get(status_list_uri(ledger.net, "edu", kind, n))
           for kind in TYPES for n in range(STATUS_LISTS)]
    assert sum(g is not None for g in got) == 1
    assert len(cache._bufs) == 1


def test_an_empty_list_is_read_without_a_buffer(ledger: Any,
                                                agencies: dict[str, Agency]) -> None:
    """Asking for an empty list allocated its 256 KiB buffer, then dropped it: now nothing is
    allocated unless the store names a credential in it (traced, not timed)."""
    import tracemalloc

    _setup(ledger, agencies)
    edu = agencies["edu"]
    ledger.commit([issue_tx(ledger.net, edu, hashlib.sha256(b"one").digest(), "degree", 5,
                            T0, T0 + DAY, T0 + 5)], T0 + 5)
    cache = StatusListCache(ledger.store)
    assert cache.get(status_list_uri(ledger.net, "edu", "degree")) is not None
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        for n in range(1, 4):
            assert cache.get(status_list_uri(ledger.net, "edu", "degree", n)) is None
        peak = tracemalloc.get_traced_memory()[1] - before
    finally:
        tracemalloc.stop()
    assert peak < STATUS_LIST_SIZE // 4 // 16, peak  # a list's buffer is 256 KiB
    assert cache.full_reads == 4


def test_cache_survives_reopen(ledger: Any, agencies: dict[str, Agency]) -> None:
    """A fresh cache on a reopened store starts from a full read and agrees with it."""
    _setup(ledger, agencies)
    edu = agencies["edu"]
    cid = hashlib.sha256(b"reopen").digest()
    ledger.commit([issue_tx(ledger.net, edu, cid, "degree", 77, T0, T0 + DAY, T0 + 5)], T0 + 5)
    ledger.commit([status_tx(ledger.net, edu, cid, "revoked", "test", T0 + 6)], T0 + 6)
    store = ledger.reopen()
    uri = status_list_uri(ledger.net, "edu", "degree")
    lst = StatusListCache(store).get(uri)
    assert lst is not None
    assert lst.get(77) == 1
    assert lst.data == store_status_list(store, uri).data  # type: ignore[union-attr]


def test_unchanged_list_is_served_as_the_same_object(ledger: Any,
                                                     agencies: dict[str, Agency]) -> None:
    """A block that does not touch a list keeps its object, so its encoding is reused."""
    _setup(ledger, agencies)
    edu, tax = agencies["edu"], agencies["tax"]
    ledger.commit([issue_tx(ledger.net, edu, bytes(32), "degree", 5, T0, T0 + DAY, T0 + 5),
                   issue_tx(ledger.net, tax, bytes(31) + b"\x01", "diploma", 6, T0, T0 + DAY,
                            T0 + 5)], T0 + 5)
    cache = StatusListCache(ledger.store)
    degree = status_list_uri(ledger.net, "edu", "degree")
    diploma = status_list_uri(ledger.net, "tax", "diploma")
    first, other = cache.get(degree), cache.get(diploma)
    ledger.commit([status_tx(ledger.net, tax, bytes(31) + b"\x01", "suspended", "t", T0 + 6)],
                  T0 + 6)
    assert cache.get(degree) is first
    changed = cache.get(diploma)
    assert changed is not other
    assert changed is not None
    assert changed.get(6) == 2


def test_status_values_are_status_entries(ledger: Any, agencies: dict[str, Agency]) -> None:
    """The chunked, key-ordered read gives exactly the pairs of the plain one."""
    _setup(ledger, agencies)
    edu = agencies["edu"]
    txs = [issue_tx(ledger.net, edu, hashlib.sha256(b"sv-%d" % i).digest(), "degree", 97 * i,
                    T0, T0 + DAY, T0 + 5) for i in range(50)]
    txs += [status_tx(ledger.net, edu, hashlib.sha256(b"sv-%d" % i).digest(), "revoked", "t",
                      T0 + 6) for i in range(0, 50, 7)]
    ledger.commit(txs, T0 + 6)
    want = sorted(ledger.store.status_entries("edu", "degree"))
    assert len(want) == 50
    for chunk in (1, 7, 1000):
        assert sorted(ledger.store.status_values("edu", "degree", chunk=chunk)) == want


def test_a_lists_issuer_and_type_are_read_from_its_uri(ledger: Any,
                                                       agencies: dict[str, Agency]) -> None:
    """`list_ref` answers what `list_refs` maps, without building the map of agencies by types
    for each request (quadratic in a city's registry, ADR 48)."""
    from ledger.offline import list_ref, list_refs

    _setup(ledger, agencies)
    registry = ledger.store.registry
    refs = list_refs(registry)
    assert refs  # the harness registers types
    for uri, ref in refs.items():
        assert list_ref(registry, uri) == ref
    net = registry.network
    agency, kind, _ = next(iter(refs.values()))
    first = status_list_uri(net, agency, kind)
    # the lists after the first (ADR 55): ":1" to ":63", spelt one way only
    assert list_ref(registry, first + ":1") == (agency, kind, 1)
    assert list_ref(registry, first + f":{STATUS_LISTS - 1}") == (agency, kind, STATUS_LISTS - 1)
    for uri in (status_list_uri("another-net", agency, kind),
                status_list_uri(net, "nobody", kind), status_list_uri(net, agency, "no-type"),
                first + ":x", first[:-1], first + ":0", first + ":01", first + ":+1",
                first + ":", first + f":{STATUS_LISTS}", first + ":1:1", first + ":\u0661",
                f"urn:credledger:{net}:status-list:{agency}", ""):
        assert uri not in refs and list_ref(registry, uri) is None, uri


def _hold_scans(ledger: Any, monkeypatch: Any, which: Callable[[str, str], bool]
                ) -> tuple[threading.Event, threading.Event]:
    """The store's status scans of the lists ``which(issuer, kind)`` names read what the store
    holds, then wait, before they answer, until ``release`` is set (``scanning`` is set once
    one waits): a block committed meanwhile comes after what they read. (scanning, release)"""
    scanning, release = threading.Event(), threading.Event()
    real = ledger.store.status_values

    def held(issuer: str, kind: str, *args: Any, **kw: Any) -> Any:
        got = list(real(issuer, kind, *args, **kw))
        if which(issuer, kind):
            scanning.set()
            assert release.wait(60), "never released"
        return iter(got)

    monkeypatch.setattr(ledger.store, "status_values", held)
    return scanning, release


def test_a_first_read_holds_up_neither_other_lists_nor_blocks(
        ledger: Any, agencies: dict[str, Agency], monkeypatch: Any) -> None:
    """A list's first read scans the store outside the cache's lock: while it is stuck (an
    event holds the scan), a list already read is served, and a block that changes the list
    being read is still in it once the read ends."""
    _setup(ledger, agencies)
    edu, tax = agencies["edu"], agencies["tax"]
    ledger.commit([issue_tx(ledger.net, edu, b"\x01" * 32, "degree", 5, T0, T0 + DAY, T0 + 5),
                   issue_tx(ledger.net, tax, b"\x02" * 32, "diploma", 6, T0, T0 + DAY,
                            T0 + 5)], T0 + 5)
    cache = StatusListCache(ledger.store)
    degree = status_list_uri(ledger.net, "edu", "degree")
    diploma = status_list_uri(ledger.net, "tax", "diploma")
    assert cache.get(diploma) is not None  # read and cached
    scanning, release = _hold_scans(ledger, monkeypatch, lambda issuer, _: issuer == "edu")
    out: dict[str, Any] = {}
    reader = threading.Thread(target=lambda: out.update(degree=cache.get(degree)))
    reader.start()
    try:
        assert scanning.wait(60), "the first read never started"
        other = threading.Thread(target=lambda: out.update(diploma=cache.get(diploma)))
        other.start()
        other.join(60)  # with the lock held through the scan, this waited for it: a deadlock
        assert not other.is_alive() and out["diploma"] is not None
        assert "degree" not in out  # still reading
        ledger.commit([status_tx(ledger.net, edu, b"\x01" * 32, "revoked", "t", T0 + 6)],
                      T0 + 6)
    finally:
        release.set()
        reader.join(60)
    lst = out["degree"]
    assert lst is not None and lst.get(5) == 1  # the revocation committed during the read
    assert lst.data == store_status_list(ledger.store, degree).data  # type: ignore[union-attr]
    assert cache.get(degree) is lst and cache.full_reads == 2


def test_a_list_first_anchored_while_it_is_read_is_answered(
        ledger: Any, agencies: dict[str, Agency], monkeypatch: Any) -> None:
    """A list's first read finds no credential, and a block anchors its first while the read
    is held: the answer is the list with it (the block's issue counts), not None."""
    _setup(ledger, agencies)
    edu = agencies["edu"]
    ledger.commit([issue_tx(ledger.net, edu, b"\x01" * 32, "degree", 5, T0, T0 + DAY,
                            T0 + 5)], T0 + 5)
    cache = StatusListCache(ledger.store)
    degree = status_list_uri(ledger.net, "edu", "degree")
    diploma = status_list_uri(ledger.net, "edu", "diploma")
    assert cache.get(degree) is not None and cache.get(diploma) is None
    scanning, release = _hold_scans(ledger, monkeypatch, lambda _, kind: kind == "diploma")
    out: dict[str, Any] = {}
    reader = threading.Thread(target=lambda: out.update(diploma=cache.get(diploma)))
    reader.start()
    try:
        assert scanning.wait(60), "the read never started"
        ledger.commit([issue_tx(ledger.net, edu, b"\x02" * 32, "diploma", 9, T0, T0 + DAY,
                                T0 + 6)], T0 + 6)
        assert cache.get(degree) is not None  # the cache moves to the new head meanwhile
    finally:
        release.set()
        reader.join(60)
    lst = out["diploma"]
    assert lst is not None and lst.get(9) == 0
    assert lst.data == store_status_list(ledger.store, diploma).data  # type: ignore[union-attr]
