"""A verifying official's offline cache: the registry and every status list, in one file.

``export_snapshot`` reads a store and writes canonical msgpack::

    {"v": 1, "kind": "snapshot", "network": str, "fetched_at": int, "head_height": int,
     "log_size": int, "checkpoint": str, "registry": bytes,
     "status_lists": [{"issuer": str, "type": str, "token": str}, ...]}

A list after an issuer's first of a type (ADR 55) also names its number: ``"list": int`` (1 on).

Each status list is a Status List Token (:mod:`ledger.statuslist`) signed by the issuing agency's
*node* key (the key that serves its lists), so a verifier checks every list against the snapshot's
registry before using it. ``load_snapshot`` parses strictly (closed schema, canonical bytes) and
checks that the included checkpoint is final under the included registry. A list that is missing,
signed by a key that was not that agency's node key, or does not verify, is *undetermined*
(``status_lists`` returns None), never valid and never revoked.

Trust: the registry inside a snapshot is the verifier's cached registry. Whoever can write the
snapshot file can replace it, so keep it where only the verifier can write, as any trust anchor.

Errors::

    LedgerError
    └── SnapshotError   a snapshot that is malformed, oversize, inconsistent, or that cannot be
                        exported (an agency with credentials but no node key to sign its list)
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ledger import codec
from ledger.checkpoint import SignedCheckpoint
from ledger.codec import Fields
from ledger.credentials import STATUS_LIST_SIZE, STATUS_LISTS, status_list, status_list_uri
from ledger.errors import CheckpointError, DecodeError, LedgerError
from ledger.finality import verify_final
from ledger.keys import PrivateKey
from ledger.sdjwt import parse_jws_header
from ledger.state import Registry
from ledger.statuslist import (
    StatusList,
    StatusListError,
    make_token,
    unverified_list,
    verify_token,
)
from ledger.store import Store
from ledger.tx import Tx

__all__ = ["MAX_LISTS", "MAX_SNAPSHOT", "Snapshot", "SnapshotError", "export_snapshot",
           "left_out_lists", "list_ref", "list_refs", "load_snapshot", "merge_snapshots",
           "store_status_list"]

MAX_SNAPSHOT = 64 * 1024 * 1024
"""Largest snapshot file accepted (a registry of up to 16 MiB and many compressed lists)."""
MAX_LISTS = 65_536
"""Status lists a snapshot carries at most: a city of 60 agencies with hundreds of types has
thousands with credentials (ADR 48); a malicious file still costs at most this many checks."""
_MAX_TOKEN = 16 * 1024 * 1024


class SnapshotError(LedgerError):
    """A snapshot cannot be exported, or one from outside is malformed or inconsistent."""


ListRef = tuple[str, str, int]
"""A status list: (issuer agency, credential type, the list's number)."""


def list_refs(registry: Registry, store: Store | None = None) -> dict[str, ListRef]:
    """Status-list URI → (issuer agency, credential type, number), for every agency and
    registered type: their first lists, and with ``store`` every list that holds a credential
    there (one seek per list).

    Agencies removed from the network stay in the registry, so their lists keep an address.
    """
    out: dict[str, ListRef] = {}
    for agency in sorted(registry.agencies()):
        for kind in sorted(registry.data["types"]):
            numbers = [0] if store is None else store.status_lists(agency, kind) or [0]
            for number in numbers:
                out[status_list_uri(registry.network, agency, kind, number)] = \
                    (agency, kind, number)
    return out


def list_ref(registry: Registry, uri: str) -> ListRef | None:
    """(issuer agency, credential type, number) of the status list at ``uri``, or None: one
    entry of :func:`list_refs` without building the whole map (agencies by types: a city's
    registry made that quadratic in every snapshot and every status-list request, ADR 48)."""
    prefix = status_list_uri(registry.network, "", "")[:-1]  # "urn:…:status-list:"
    if not uri.startswith(prefix):
        return None
    agency, sep, rest = uri[len(prefix):].partition(":")
    kind, has_number, digits = rest.partition(":")
    number = int(digits) if has_number and digits.isascii() and digits.isdigit() else 0
    if not sep or agency not in registry.agencies() or kind not in registry.data["types"] \
            or not 0 <= number < STATUS_LISTS \
            or status_list_uri(registry.network, agency, kind, number) != uri:
        return None
    return agency, kind, number


def store_status_list(store: Store, uri: str) -> StatusList | None:
    """The current list at ``uri`` read straight from a store the caller trusts (its own node's),
    or None if no agency of the store's registry has anchored a credential under that list."""
    if store.registry is None:
        raise SnapshotError(f"the store at {store.path} has no chain yet")
    ref = list_ref(store.registry, uri)
    if ref is None:
        return None
    # the bulk scan (key-ordered record reads): a snapshot reads every list, and the strict
    # per-record reads took 4x as long (2.0 s against 0.5 s for 90,000 credentials)
    entries = list(store.status_values(*ref))
    if not entries:
        return None
    first = ref[2] * STATUS_LIST_SIZE
    return status_list((i - first, s) for i, s in entries)


_STATUS_VALUE = {"valid": 0, "revoked": 1, "suspended": 2}  # as ledger.credentials.status_list
_PER_BYTE = 4  # 2-bit entries


class StatusListCache:
    """The current status lists of a store the caller trusts, kept decoded and brought up to date
    one block at a time (ADR 23): a request after a new block costs the ``issue`` and ``status``
    transactions of the blocks since the last request, not a scan of every credential.

    A list is read from the store in full (:meth:`Store.status_values`: the pairs
    :func:`store_status_list` reads, in credential-id order) the first time it is asked for,
    and again after a gap of more than ``rebuild_after`` log entries (where a rescan is cheaper
    than reading the gap). Applying a block sets each anchored index to the status its
    transaction gives it, in log order; setting is idempotent, so a full read that already saw
    some of those blocks (the store grew while it was read) still ends at the head's state.
    Thread-safe; the same bytes as :func:`store_status_list` at every head (a test checks it).
    """

    def __init__(self, store: Store, *, rebuild_after: int = 500_000) -> None:
        self._store = store
        self._rebuild_after = rebuild_after
        self._lock = threading.Lock()
        self._height = -1      # the head height every cached list reflects
        self._log_size = 0
        self._bufs: dict[ListRef, bytearray] = {}
        self._frozen: dict[ListRef, StatusList] = {}
        self._gates: dict[ListRef, threading.Lock] = {}  # lists being read
        self.blocks_applied = 0
        self.full_reads = 0

    def get(self, uri: str) -> StatusList | None:
        """The current list at ``uri``; None if no credential is anchored under it.

        A list's first read scans the store outside the cache's lock (0.6 s for a list of
        90,000 credentials, seconds at 10M): the lists already read, and the checks that use
        them, are not held up meanwhile; a second asker of the same list waits for the first."""
        store = self._store
        if store.registry is None or store.head is None:
            raise SnapshotError(f"the store at {store.path} has no chain yet")
        ref = list_ref(store.registry, uri)
        if ref is None:
            return None
        with self._lock:
            self._advance()
            if ref in self._bufs:
                return self._answer(ref)
            gate = self._gates.setdefault(ref, threading.Lock())
        with gate:
            with self._lock:
                self._advance()
                if ref in self._bufs:  # read by the asker this one waited for
                    return self._answer(ref)
            head = store.head  # read before any record: every record read is at least as new
            assert head is not None
            read = self._read(ref)
            with self._lock:
                self._advance()  # the cache is now at the head's height or later
                buf, anchored = read, read is not None
                if self._height > head.height:  # blocks applied meanwhile, to the others
                    buf = buf if buf is not None else _empty_list()
                    anchored = bool(self._catch_up(self._height, start=head.height,
                                                   only=(ref, buf))) or anchored
                self._gates.pop(ref, None)
                if buf is None or not anchored:
                    # Not kept: anyone may ask for each of a type's 64 lists (ADR 55), and
                    # 256 KiB apiece of nothing adds up; asked again, it is one seek.
                    return None
                self._bufs[ref] = buf  # kept lists hold credentials (empty ones are not)
                self._frozen.pop(ref, None)
                return self._answer(ref)

    def _advance(self) -> None:
        """Bring the cached lists to the store's head (under the lock)."""
        head = self._store.head
        assert head is not None
        if head.height == self._height:
            return
        if self._bufs and head.log_size - self._log_size <= self._rebuild_after:
            for changed in self._catch_up(head.height):
                self._frozen.pop(changed, None)  # unchanged lists keep their object
        else:
            self._bufs.clear()
            self._frozen.clear()
        self._height, self._log_size = head.height, head.log_size

    def _answer(self, ref: ListRef) -> StatusList:
        lst = self._frozen.get(ref)
        if lst is None:
            lst = self._frozen[ref] = StatusList(2, bytes(self._bufs[ref]))
        return lst

    def _read(self, ref: ListRef) -> bytearray | None:
        """The list as the store has it; None if it holds no credential (then nothing is
        allocated: most of a type's lists are empty, and anyone may ask for each)."""
        buf: bytearray | None = None
        first = ref[2] * STATUS_LIST_SIZE
        for index, status in self._store.status_values(*ref):
            if buf is None:
                buf = _empty_list()
            _set(buf, index - first, _STATUS_VALUE[status])
        with self._lock:
            self.full_reads += 1
        return buf

    def _catch_up(self, height: int, *, start: int | None = None,
                  only: tuple[ListRef, bytearray] | None = None) -> set[ListRef]:
        """Apply blocks ``start + 1 .. height`` (from the cache's height) to the cached lists,
        or to ``only`` (a list just read, not yet cached); the lists that changed."""
        changed: set[ListRef] = set()
        store = self._store
        bufs = self._bufs if only is None else {only[0]: only[1]}
        first = (self._height if start is None else start) + 1
        for h in range(first, height + 1):
            for raw in store.block_entries(store.block(h)):
                # Committed entries of the node's own store: bytes the state machine accepted
                # after the strict parse, so the trusted re-read suffices (ADR 23).
                tx = Tx.from_checked_bytes(raw)
                if tx.type == "issue":
                    b = tx.body
                    issuer, kind, index, value = b["issuer"], b["type"], b["status_index"], 0
                elif tx.type == "status":
                    cred = store.credential(tx.body["credential_id"])
                    if cred is None:
                        raise SnapshotError("a committed status change names no credential")
                    issuer, kind = cred.issuer, cred.type
                    index, value = cred.status_index, _STATUS_VALUE[tx.body["status"]]
                else:
                    continue
                number, index = divmod(index, STATUS_LIST_SIZE)
                ref = (issuer, kind, number)
                buf = bufs.get(ref)
                if buf is None:
                    continue
                changed.add(ref)
                _set(buf, index, value)
            if only is None:
                self.blocks_applied += 1
        return changed


def _empty_list() -> bytearray:
    """A list's 2-bit entries, all valid (256 KiB)."""
    return bytearray(STATUS_LIST_SIZE // _PER_BYTE)


def _set(buf: bytearray, index: int, value: int) -> None:
    pos, shift = index >> 2, (index & 3) << 1
    buf[pos] = (buf[pos] & ~(3 << shift) & 0xFF) | (value << shift)


def export_snapshot(store: Store, now: int, *, node_keys: Mapping[str, PrivateKey],
                    only_keyed: bool = False,
                    read_list: Callable[[str], StatusList | None] | None = None) -> bytes:
    """The canonical snapshot bytes of ``store`` at time ``now``.

    ``node_keys`` maps agency id → that agency's node key; every current agency with anchored
    credentials and a node key valid at ``now`` in the registry needs that key to sign its
    lists (else SnapshotError). With ``only_keyed`` the lists of the agencies in ``node_keys``
    alone (a node's part: :func:`merge_snapshots` puts the parts of several agencies' nodes
    together). The lists of agencies no longer members at ``now``, or left
    with no valid node key (invalidated with no successor), are left out
    (:func:`left_out_lists` names them and says why): no current key vouches for them, so
    their credentials' status is undetermined offline, and a verifier with the ledger (a
    node) still tells it (ADR 46, 47). ``read_list`` reads a list (default: from the store).
    """
    registry, head = store.registry, store.head
    if registry is None or head is None:
        raise SnapshotError(f"the store at {store.path} has no chain yet")
    text = store.head_checkpoint(head)  # not one past the head read: the snapshot's log size
    if text is None:
        raise SnapshotError("the store holds no checkpoint to include")
    read = read_list or (lambda uri: store_status_list(store, uri))
    agencies = sorted(a for a in registry.agencies() if not only_keyed or a in node_keys)
    lists: list[dict[str, Any]] = []
    refs = sorted((status_list_uri(registry.network, a, k, n), a, k, n)
                  for a in agencies for k in registry.data["types"]
                  for n in store.status_lists(a, k))
    for uri, issuer, kind, number in refs:
        if _why_left_out(registry, issuer, now) is not None:
            continue
        lst = read(uri)
        if lst is None:
            continue
        key = node_keys.get(issuer)
        if key is None:
            raise SnapshotError(f"no node key of {issuer!r} to sign its {kind!r} status list")
        k = registry.key(key.kid)
        if k is None or k["agency"] != issuer or not registry.key_valid(key.kid, now, "node"):
            raise SnapshotError(f"the key given for {issuer!r} is not its valid node key at {now}")
        token = make_token(lst, sub=uri, iat=now, exp=None, ttl=None, key=key,
                           kid=key.kid.hex())
        lists.append(_list_item(issuer, kind, number, token))
    if len(lists) > MAX_LISTS:
        raise SnapshotError(f"{len(lists)} status lists hold credentials: a snapshot carries "
                            f"at most {MAX_LISTS}")
    return codec.encode({
        "v": 1, "kind": "snapshot", "network": registry.network, "fetched_at": now,
        "head_height": head.height, "log_size": head.log_size, "checkpoint": text.decode(),
        "registry": registry.to_bytes(), "status_lists": lists})


MERGE_SPREAD = 60
"""Seconds at most between the parts of a merged snapshot (their ``fetched_at``): the merged
snapshot is as of the earliest, and a list signed later than that by more than the clock skew
status lists allow would not verify."""


def _checkpoint_size(s: Snapshot) -> int:
    return SignedCheckpoint.from_text(s.checkpoint).checkpoint.size


def merge_snapshots(parts: Sequence[bytes], asked: Collection[str] | None = None
                    ) -> tuple[bytes, dict[str, str]]:
    """One snapshot from the parts of several agencies' nodes (``GET /v1/snapshot``: each
    node signs its own agency's lists, as only it holds that key), and of each list the token
    signed last among the parts' that verify under their registry: a part is untrusted, and
    one carrying an older genuine token (from before a revocation) must not displace the
    current one; a token signed more than :data:`MERGE_SPREAD` before the merged snapshot's
    time is refused even alone.

    The parts must carry one registry, byte for byte: a node cannot bring a registry of its
    own (keys of its own "finalizing" a checkpoint of its own), nor an older one. The merged
    snapshot is as of the part least far along and the earliest part's time, which no part's
    unsigned head can move: a list is as of its part's head or later, and a credential
    anchored past the merged log size stays *undetermined*, never *valid* (the checkpoint is
    the largest of the parts' within that size).

    Also returns what a verifier lacks: a list refused (URI → why), and each current agency
    with a valid node key whose lists no part carries (its id → why), or, given ``asked``
    (the agencies whose nodes made the parts), each such agency not asked. SnapshotError if a
    part is not a snapshot, or the parts differ in network or registry, or lie far apart."""
    snaps = []
    for n, part in enumerate(parts, 1):
        try:
            snaps.append(load_snapshot(part))
        except SnapshotError as e:
            raise SnapshotError(f"part {n}: {e}") from e
    if not snaps:
        raise SnapshotError("no part to merge")
    networks = sorted({s.network for s in snaps})
    if len(networks) > 1:
        raise SnapshotError(f"the parts are of different networks: {', '.join(networks)}")
    if len({s.registry.to_bytes() for s in snaps}) > 1:
        raise SnapshotError("the parts carry different registries (a governance change while "
                            "they were made, or a node that does not hold this network's "
                            "registry): make the snapshot again, and if they still differ, "
                            "look into the nodes")
    times = sorted(s.fetched_at for s in snaps)
    if times[-1] - times[0] > MERGE_SPREAD:
        raise SnapshotError(f"the parts were made {times[-1] - times[0]} s apart (at most "
                            f"{MERGE_SPREAD}): a node's clock is off, or the nodes answered "
                            "slowly; make the snapshot again")
    at = times[0]
    low = min(snaps, key=lambda s: (s.log_size, s.head_height))
    base = max((s for s in snaps if _checkpoint_size(s) <= low.log_size), key=_checkpoint_size)
    offers: dict[str, list[tuple[str, str]]] = {}
    for s in sorted(snaps, key=lambda s: -s.fetched_at):  # the newest list of a URI first
        for uri, got in s.tokens.items():
            offers.setdefault(uri, []).append(got)
    missing: dict[str, str] = {}
    kept: list[dict[str, Any]] = []
    for uri, offered in sorted(offers.items()):
        ref = list_ref(base.registry, uri)
        best: tuple[int, str, str] | None = None  # (iat, issuer, token) signed last
        for issuer, token in offered:  # every offer: a bad part hides no good one
            one = Snapshot(base.network, base.registry, at, low.head_height, low.log_size,
                           base.checkpoint, {uri: (issuer, token)})
            try:
                if ref is None or ref[0] != issuer:
                    raise StatusListError(f"{uri} is not a status list of {issuer!r} in this "
                                          "registry")
                one.status_list(uri)  # refuses a token older than the snapshot (a replay)
                iat = unverified_list(token, uri)[1]  # verified just above: an int
            except LedgerError as e:
                if best is None:
                    missing[uri] = str(e)
                continue
            if best is None or iat > best[0]:  # the list signed last, not the first offered
                best = (iat, issuer, token)
        if best is not None and ref is not None:
            missing.pop(uri, None)
            kept.append(_list_item(best[1], ref[1], ref[2], best[2]))
    if len(kept) > MAX_LISTS:
        raise SnapshotError(f"{len(kept)} status lists hold credentials: a snapshot carries "
                            f"at most {MAX_LISTS}")
    served = {e["issuer"] for e in kept} | set(asked or ())
    for agency in sorted(base.registry.agencies()):
        if agency not in served and _why_left_out(base.registry, agency, at) is None:
            missing[agency] = (
                f"the node of {agency!r} was not asked, and only it signs its lists" if asked
                is not None else f"no status list of {agency!r}: it has issued nothing, or "
                "its own node was not asked (only an agency's node signs its lists)")
    blob = codec.encode({
        "v": 1, "kind": "snapshot", "network": base.network, "fetched_at": at,
        "head_height": low.head_height, "log_size": low.log_size,
        "checkpoint": base.checkpoint, "registry": base.registry.to_bytes(),
        "status_lists": kept})
    load_snapshot(blob)  # what a verifier will load: fail here rather than there
    return blob, missing


def _list_item(issuer: str, kind: str, number: int, token: str) -> dict[str, Any]:
    """A snapshot's entry for a list: its number only past the first (as before ADR 55)."""
    item: dict[str, Any] = {"issuer": issuer, "type": kind, "token": token}
    if number:
        item["list"] = number
    return item


def left_out_lists(store: Store, now: int) -> dict[str, str]:
    """The status lists with credentials in them that :func:`export_snapshot` leaves out at
    ``now``, each with the reason: URI → why no current key vouches for it."""
    registry = store.registry
    if registry is None:
        raise SnapshotError(f"the store at {store.path} has no chain yet")
    out: dict[str, str] = {}
    for uri, (issuer, _, _) in sorted(list_refs(registry, store).items()):
        why = _why_left_out(registry, issuer, now)
        if why is not None and store_status_list(store, uri) is not None:
            out[uri] = why
    return out


def _why_left_out(registry: Registry, issuer: str, now: int) -> str | None:
    """Why ``issuer``'s lists cannot be signed at ``now``, or None if they can."""
    if not registry.agency_current(issuer, now):
        return f"{issuer!r} is no longer a member of the network"
    if not any(registry.key_valid(kid, now, "node") for kid, _ in registry.keys_of(issuer)):
        return f"{issuer!r} has no valid node key (invalidated with no successor)"
    return None


def _unverified_kid(token: str) -> bytes:
    """The ``kid`` in a token's header: only used to pick which registered key to verify with."""
    try:
        # strict and bounded (a header of nested arrays raised RecursionError here)
        kid = parse_jws_header(token)["kid"]
        return bytes.fromhex(kid)
    except (LedgerError, ValueError, KeyError, TypeError) as e:
        raise StatusListError(f"token header names no usable kid: {e}") from e


@dataclass(frozen=True)
class Snapshot:
    """A parsed snapshot. Status lists are verified when asked for, never trusted as stored."""

    network: str
    registry: Registry = field(repr=False, compare=False)
    fetched_at: int
    head_height: int
    log_size: int
    checkpoint: str = field(repr=False)
    tokens: Mapping[str, tuple[str, str]] = field(repr=False)
    """URI → (issuer agency, unverified Status List Token)."""

    def age(self, now: int) -> int:
        """Seconds since the snapshot was exported (negative if ``now`` is before it)."""
        return now - self.fetched_at

    def status_list(self, uri: str) -> StatusList:
        """The verified list at ``uri``; raise StatusListError if it is missing or fails."""
        got = self.tokens.get(uri)
        if got is None:
            raise StatusListError(f"the snapshot holds no status list {uri}")
        issuer, unverified_token = got
        kid = _unverified_kid(unverified_token)
        k = self.registry.key(kid)
        if not self.registry.agency_current(issuer, self.fetched_at):
            raise StatusListError(f"status list {uri} is of {issuer!r}, which was not a member "
                                  "of the network when the snapshot was made")
        if k is None or k["agency"] != issuer or \
                not self.registry.key_valid(kid, self.fetched_at, "node"):
            raise StatusListError(f"status list {uri} is signed by key {kid.hex()[:16]}, which "
                                  f"was not a node key of {issuer!r} when the snapshot was made")
        lst = verify_token(unverified_token, public_key=self.registry.public_keys[kid],
                           expected_sub=uri, now=self.fetched_at)
        iat = unverified_list(unverified_token, uri)[1]  # verified just above: an int
        if iat < self.fetched_at - MERGE_SPREAD:
            # a snapshot's lists are signed when it is made (or merged within MERGE_SPREAD) and
            # carry no exp or ttl: an older genuine token spliced in (or replayed by a lying
            # node's part of a merge) would undo a revocation
            raise StatusListError(f"the token of {uri} was signed at {iat}, "
                                  f"{self.fetched_at - iat} s before the snapshot's time "
                                  f"{self.fetched_at}: an older list, not the snapshot's")
        return lst

    def status_lists(self, uri: str) -> StatusList | None:
        """For :func:`ledger.presentation.verify_envelope`: the verified list, or None."""
        try:
            return self.status_list(uri)
        except LedgerError:
            return None


def load_snapshot(unverified: bytes) -> Snapshot:
    """Parse snapshot bytes; raise SnapshotError if malformed or its checkpoint is not final."""
    try:
        f = Fields(codec.decode(unverified, max_size=MAX_SNAPSHOT, what="snapshot"), "snapshot")
        f.version(1, "snapshot")
        f.str("kind", choices=frozenset({"snapshot"}))
        network = f.str("network")
        fetched_at = f.int("fetched_at", lo=0)
        head_height = f.int("head_height", lo=0)
        log_size = f.int("log_size", lo=1)
        checkpoint = f.str("checkpoint", max_len=64 * 1024)
        registry = Registry.from_unverified(f.bytes("registry", max_len=MAX_SNAPSHOT))
        items = f.list("status_lists", max_len=MAX_LISTS)
        f.done()
        tokens: dict[str, tuple[str, str]] = {}
        for i, item in enumerate(items):
            g = Fields(item, f"snapshot.status_lists[{i}]")
            issuer, kind = g.str("issuer"), g.str("type")
            number = g.int("list", lo=1, hi=STATUS_LISTS - 1) if g.has("list") else 0
            token = g.str("token", max_len=_MAX_TOKEN)
            g.done()
            uri = status_list_uri(network, issuer, kind, number)
            if uri in tokens:
                raise DecodeError(f"two lists for {uri}", g.where)
            tokens[uri] = (issuer, token)
    except DecodeError as e:
        raise SnapshotError(f"not a snapshot: {e}") from e
    except (KeyError, TypeError, ValueError) as e:  # a registry map of the wrong shape
        raise SnapshotError(f"not a snapshot: the registry is malformed ({e})") from e
    if registry.network != network:
        raise SnapshotError(f"snapshot network {network!r} differs from its registry's "
                            f"{registry.network!r}")
    try:
        signed = SignedCheckpoint.from_text(checkpoint)
        verify_final(signed, registry, fetched_at)
    except CheckpointError as e:
        raise SnapshotError(f"the snapshot's checkpoint is not final: {e}") from e
    if signed.checkpoint.size > log_size:
        raise SnapshotError(f"the snapshot's checkpoint (size {signed.checkpoint.size}) is ahead "
                            f"of its log size {log_size}")
    return Snapshot(network, registry, fetched_at, head_height, log_size, checkpoint, tokens)
