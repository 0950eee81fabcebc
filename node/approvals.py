"""Applications, approvals and credit records on an agency node (domain logic, no HTTP).

An application: the node opens one presentation request per credential type the service's rule
needs (only the claims it needs), verifies the holder's answers, evaluates the rule at the head
(its height and block time), commits an ``approval`` transaction (decision, rule hash, reasons,
digest of the evidence — no claim values), keeps the evidence record in ``<data>/approvals``
(0600, sealed with the node's evidence key: ADR 66; claim values never reach a log) and issues
the applicant an ``approval`` credential.

A citizen or business proves its identity with an identity credential to read its own credit
record; the node turns the identifier into the keyed pseudonym with the network secret in
``<data>/keys/credit.secret``. Nothing lists subjects.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import logging
import re
import secrets
import threading
import time as _time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from contracts import Evidence, pseudonym, summary
from contracts.catalogue import APPROVAL_TYPE, IDENTITY
from contracts.errors import ApplicationError
from contracts.rules import CelEngine, CompiledRule, Outcome
from ledger import codec, sdjwt
from ledger.errors import (
    DecodeError,
    LedgerError,
    OrderingError,
    StoreError,
    TxRejected,
    damaged,
)
from ledger.files import write_atomic
from ledger.network import reason_code_problem
from ledger.ordering import Receipt
from ledger.presentation import Bundle, Envelope
from ledger.sealed import is_sealed, key_mark, open_record, seal_record
from ledger.state import MAX_BACKDATE, Registry, credit_events, rule_hash
from ledger.timetext import local_day, utc_text
from ledger.tx import Tx, make_tx
from node.service import CREDIT_SECRET_FILE, REQUEST_TTL, Node, NotFound, PendingRequest

_log = logging.getLogger("node.approvals")


def _free(opened: int) -> None:
    """Requests opened in-process (tests, the demo) cost nothing."""


_RECORD_NAME = re.compile(r"[0-9]{12,}-([0-9a-f]{64})\.ev")
"""A filed record's name: its decision's log index and transaction id (:meth:`Approvals._keep`)."""

CREDIT_RECORD = "credit record"
"""The purpose of a request ``POST /v1/credit/requests`` opens: its answer reads the proven
subject's own credit record, and counts nowhere else (:class:`~node.service.PendingRequest`)."""


def application_purpose(service: str) -> str:
    """The purpose of the requests an application for ``service`` opens: their answers count
    for that application only."""
    return f"application {service}"


MAX_CHALLENGES = 20_000
"""Open collect challenges kept at most (:meth:`Approvals.challenge`; each is paid for)."""

COLLECT_TYP = "approval-collect+jwt"
"""The ``typ`` of a wallet's proof for :meth:`Approvals.collect`: no key-binding JWT (``kb+jwt``)
shown to a verifier passes for one."""

INDEX_FOLDER = "holders"
_KEYLESS: dict[str, str] = {}
"""The index's holder key for decisions recorded before records kept one (ADR 78): no
application's key is empty, so their entry, per service, says only that there are some."""
"""The folder of ``<data>/approvals`` that finds a holder key's decisions on a service for
:meth:`Approvals.collect` without opening every record: one file a (key, service), named by
a keyed digest of the two (:meth:`Approvals._digest`), holding the decisions' txids sealed
with the evidence key. Nothing in it is a key, a claim or an applicant in the clear."""

_INDEX_DONE = "complete"
"""Written in INDEX_FOLDER once it holds every record of the folder (made from them where it
was missing: a store from before it): the mark of the key its names are made with, then how
many records it covers and the name of the newest (``<count> <name>``). A collect compares
that with the records' names (no record opened) and indexes those filed since: by a version
before the index (a rollback), by a path that does not update it, or after ``holders/`` was
restored from an older backup (helper round 35X)."""

_CREDENTIAL = "credential"
"""The member of a decision's record that keeps its one approval credential
(:meth:`Approvals._issue_approval`); audits read ``tx`` and ``evidence`` alone."""

PENDING_DAYS = 1
"""After this long a pending approval record whose decision is not on the ledger is removed
(once the node's copy is past where it could commit: :meth:`Approvals._never_committed`)."""

__all__ = ["Approvals", "Decided", "DecidedNotIssued"]

SECRET_FILE = CREDIT_SECRET_FILE


class DecidedNotIssued(OrderingError):
    """An application's decision is committed, but its approval credential was not issued: a
    refusal of the issue after the commit. Never a plain refusal of the application (an
    application sent again is decided again) nor ``taken: false`` (ADR 84): it says the decision
    is on the ledger and how the applicant collects its credential. ``code`` goes in the error
    body, for `wallet apply` to say so."""

    code = "decided_not_issued"


@dataclass(frozen=True)
class Decided:
    outcome: Outcome
    service: str
    rule_hash: bytes
    approval: Tx
    receipt: Receipt
    bundle: Bundle

    def to_json(self) -> dict[str, Any]:
        return {"service": self.service, "rule_hash": self.rule_hash.hex(),
                "decision": self.outcome.decision, "path": self.outcome.path,
                "reasons": list(self.outcome.reasons),
                "documents": list(self.outcome.documents),
                "approval_tx": self.approval.txid.hex(), "height": self.receipt.height,
                "index": self.receipt.index}


class Approvals:
    """The approval and credit-record services of one :class:`Node`."""

    def __init__(self, node: Node, engine: CelEngine | None = None) -> None:
        self.node = node
        self.engine = engine or CelEngine()
        self.folder = node.data / "approvals"
        self._filed_at: float | None = None  # monotonic time of the last file_pending
        self._keys = {key_mark(node.evidence_key): node.evidence_key}  # opens its records
        self._filing = threading.Lock()
        self._challenges: dict[str, tuple[str, float]] = {}  # nonce -> (service, timer)
        self._challenging = threading.Lock()
        self._issuing: dict[bytes, tuple[threading.Lock, int]] = {}  # _one_decision
        self._indexing = threading.Lock()  # one change of the index at a time
        self._synced: tuple[int, ...] | None = None  # _index_sync: what it last found current
        self._index_warned = False  # an index that cannot be written is logged once
        self._index_key = hmac.new(node.evidence_key, b"credledger/v1/collect-index\x00",
                                   hashlib.sha256).digest()
        self._issuing_guard = threading.Lock()

    # -- rules --
    def services(self) -> list[dict[str, Any]]:
        return [self.service(s) for s in self.node._registry().services()]

    def service(self, service: str, reg: Registry | None = None) -> dict[str, Any]:
        """The service's current rule and its history (``reg``: another registry than the
        store's current one)."""
        reg = self.node.store.registry if reg is None else reg
        rule = None if reg is None else reg.rule(service)
        if rule is None or reg is None:
            raise NotFound(f"no approval rule is registered for {service!r}")
        return {"service": service, "title": rule["title"], "area": rule["area"],
                "agency": rule["agency"], "needs": rule["needs"],
                "documents": rule["documents"], "rule_hash": rule_hash(rule).hex(),
                "versions": [[t, h.hex()] for t, h in reg.rule_versions(service)],
                "rule": rule}

    def _rule(self, service: str, reg: Registry | None = None) -> dict[str, Any]:
        rule: dict[str, Any] = self.service(service, reg)["rule"]
        if rule["agency"] != self.node.agency:
            raise ApplicationError(f"{service!r} is decided by {rule['agency']!r}, not by "
                                   f"this node ({self.node.agency!r})")
        return rule

    @staticmethod
    def _made_by(service: str, rule: dict[str, Any], version: bytes | None) -> dict[str, Any]:
        """``rule`` if the application was made by it (``version``: the hash of the rule the
        applicant was shown; None: no version named); else ``stale_rule``: decided by the new
        version, the applicant would have been shown one rule and judged by another."""
        if version is not None and rule_hash(rule) != version:
            raise TxRejected("stale_rule", f"the rule for {service!r} is version "
                             f"{rule_hash(rule).hex()[:16]} now, not {version.hex()[:16]} the "
                             "application was made by: nothing was decided. Read the rule "
                             "again (a newer registry snapshot) and apply again")
        return rule

    # -- applying --
    def open_application(self, service: str, audience: str, *,
                         pay: Callable[[int], None] = _free) -> list[PendingRequest]:
        """One presentation request per needed credential type, asking only needed claims;
        none when this node could not decide now (:meth:`_ready`). ``pay`` is told how many
        it opens first, and opens none by raising (the HTTP route's rate limit)."""
        rule = self._rule(service)
        self._ready(rule)
        self._affordable(self.engine.compile(rule))
        pay(len(rule["needs"]))
        return [self.node.new_request(n["type"], list(n["claims"]), audience,
                                      purpose=application_purpose(service))
                for n in rule["needs"]]

    def _may_decide(self, reg: Registry, now: int, consequence: str) -> None:
        """Refuse (saying ``consequence``) unless, in ``reg`` at ``now``, this agency may issue
        approval credentials with the node's issuing key."""
        if not reg.grant_covers(self.node.agency, APPROVAL_TYPE["id"], now):
            raise ApplicationError(f"{self.node.agency!r} holds no grant to issue "
                                   f"{APPROVAL_TYPE['id']!r} credentials now, {consequence}; "
                                   "governance must grant it first")
        if not reg.key_valid(self.node.issuer_key.public.kid, now, "issuer"):
            raise ApplicationError(f"this node's issuing key is not a valid issuer key of "
                                   f"{self.node.agency!r} now (rotated or invalidated), "
                                   f"{consequence}")

    @staticmethod
    def _affordable(compiled: CompiledRule) -> None:
        """Refuse a rule whose evaluation could cost too much (registered before nodes
        refused such rules at /v1/tx): every application would pay for it (ADR 57)."""
        if compiled.cost_problem is not None:
            raise ApplicationError(f"{compiled.service!r} is not decided by this node: its rule "
                                   f"would cost too much to evaluate ({compiled.cost_problem}); "
                                   "the agency must register a cheaper version")

    def _ready(self, rule: dict[str, Any]) -> None:
        """Refuse before any claim is asked for or shown when what a decision needs besides
        the applicant's claims is missing here: the grant of approval credentials, a valid
        issuing key, for a rule on credit the network's credit secret and policy, and co-signing
        nodes enough for the credential to be proven (the same checks run again on the
        registry the decision is made on)."""
        reg = self.node.store.registry
        if reg is None:
            raise ApplicationError("this node has no chain yet")
        self._may_decide(reg, self.node.now(), "so it cannot decide applications")
        if rule["subject"]:
            self._secret()
            mismatch = self.node.credit_problem()
            if mismatch:
                raise ApplicationError(mismatch)
            if reg.credit_policy() is None:
                raise ApplicationError("no credit policy is registered, so a rule on credit "
                                       "cannot be decided")
        self.node.check_can_finalize()

    def _verified(self, service: str, answers: list[tuple[str, bytes]],
                  holder_jwk: dict[str, Any]) -> tuple[dict[str, dict[str, Any]], list[bytes]]:
        claims: dict[str, dict[str, Any]] = {}
        ids: list[bytes] = []
        purpose = application_purpose(service)
        for nonce, envelope in answers:
            pending = self.node.request(nonce, purpose=None)
            if pending.purpose != purpose:  # a desk's: its answer was shown for that alone
                raise ApplicationError(f"the {pending.request.credential_type!r} presentation "
                                       f"answers a request that is not a request of an "
                                       f"application for {service!r} (open one with POST "
                                       f"/v1/services/{service}/applications); nothing was "
                                       "decided")
            report = self.node.verify(envelope, nonce, purpose)
            if not report.verified:
                failed = [c.name for c in report.checks if not c.ok] or [report.status]
                raise ApplicationError(f"the {pending.request.credential_type!r} presentation "
                                       f"did not verify ({', '.join(failed)})")
            env = Envelope.from_bytes(envelope)
            payload = sdjwt.parse(env.sd_jwt_kb).payload
            try:  # compared as read: one key in two spellings is the same holder's
                bound = sdjwt.public_jwk(payload.get("cnf", {}).get("jwk"))
            except (sdjwt.JwkError, AttributeError, TypeError):
                bound = None
            if bound != holder_jwk:
                raise ApplicationError("every presented credential must be bound to the "
                                       "applicant's holder key")
            kind = pending.request.credential_type
            if kind in claims:  # which one's claims would decide?
                raise ApplicationError(f"two presentations of {kind!r}: present one "
                                       "credential of each type the rule needs")
            claims[kind] = {c: report.claims[c] for c in pending.request.claims}
            ids.append(Tx.from_checked_bytes(env.anchor).body["credential_id"])
        return claims, ids

    def apply(self, service: str, answers: list[tuple[str, bytes]],
              holder_jwk: dict[str, Any], rule_version: bytes | None = None) -> Decided:
        """Verify the answers, decide, commit the approval, issue the approval credential.
        ``rule_version``: the hash of the rule the applicant was shown (its wallet's registry
        snapshot); another version in force decides nothing (``stale_rule``). None: decided by
        the version in force (wallets before ADR 82)."""
        # before the answers are opened
        self._ready(self._made_by(service, self._rule(service), rule_version))
        holder_jwk = sdjwt.public_jwk(holder_jwk)  # its one spelling, a key or JwkError
        claims, ids = self._verified(service, answers, holder_jwk)
        store = self.node.store
        # The head and the registry of that very block, read from the store together: reading
        # the live registry apart from the head could pair a governance change committed in
        # between with the older head, which the audit would then find at odds (it re-evaluates
        # at the evidence's height).
        head = self.node._head()
        reg = store.registry_at(head.height)
        rule = self._made_by(service, self._rule(service, reg), rule_version)  # at that head
        claims = self._needed(rule, claims)
        now = self.node.now()
        self._may_decide(reg, now, "so no decision was made or recorded")
        compiled = self.engine.compile(rule)
        self._affordable(compiled)
        subject, credit = b"", None
        if rule["subject"]:
            kind, claim = rule["subject"]
            if claim not in claims.get(kind, {}):  # answered a request not asking for it
                raise ApplicationError(f"{service!r} needs a {kind!r} presentation that "
                                       f"discloses its {claim!r} claim")
            subject = pseudonym(str(claims[kind][claim]), self._secret())
            policy = reg.credit_policy()
            if policy is None:
                raise ApplicationError("no credit policy is registered")
            credit = summary(store, policy, subject, height=head.height,
                             time=head.time).to_map()
        outcome = compiled.evaluate(claims, credit, head.time)
        evidence = Evidence(service, compiled.hash, head.height, head.time, claims,
                            tuple(ids), secrets.token_bytes(16), subject, credit or {})
        tx = make_tx(self.node.network, "approval", {
            "service": service, "rule_hash": compiled.hash, "decision": outcome.decision,
            "path": outcome.path, "reasons": list(outcome.reasons),
            "evidence": evidence.digest, "ts": now}, [self.node.issuer_key])
        self.node.check_can_finalize()  # else the decision would commit with no credential
        # The evidence is kept before the decision commits: a disk that cannot hold it
        # refuses the application, instead of a decision on the ledger no audit can re-check.
        pending, record = self._keep_pending(tx, evidence, outcome, holder_jwk)
        try:
            receipt = self.node.commit(tx, f"the decision on {service!r}", (
                "its record is kept pending, and the applicant gets no approval credential "
                "from this request: once it commits they collect it (`wallet apply "
                f"{service} --collect`), and applying again would be decided again"))
        except TxRejected:  # not decided: its evidence is kept for nothing
            pending.unlink(missing_ok=True)
            raise
        except LedgerError as e:
            if e.taken is False:  # nothing handed on (ADR 84): no decision, as above
                pending.unlink(missing_ok=True)
            raise
        kept = pending
        try:
            kept = self._keep(pending, record, receipt)
        except OSError as e:  # the evidence is safe in the pending record, filed later
            _log.warning("approval record left pending", extra={"error": type(e).__name__,
                                                                "file": pending.name})
        try:
            bundle = self._issue_approval(tx, holder_jwk, kept)
        except LedgerError as e:
            # What took nothing ("taken": false, ADR 84) or was refused (a 4xx: the grant of
            # approval credentials or the issuing key no longer current now, a withdrawal or
            # rotation come due) was the credential's issue: the decision is on the ledger,
            # and said either way the applicant applied again, decided again (44T). A 5xx
            # that may be done yet goes as it is.
            if e.taken is not False and isinstance(e, (OrderingError, StoreError)):
                raise
            when = "once /v1/health is ok" if e.taken is False else "once this node can issue it"
            raise DecidedNotIssued(
                f"the decision on {service!r} (txid {tx.txid.hex()}) is committed, but its "
                f"approval credential was not issued ({e}): {when} the applicant collects it "
                f"(`wallet apply {service} --collect`); an application sent again is decided "
                "again") from e
        return Decided(outcome, service, compiled.hash, tx, receipt, bundle)

    def _issue_approval(self, tx: Tx, holder_jwk: dict[str, Any], path: Path) -> Bundle:
        """The approval credential of the committed decision ``tx`` whose record is ``path``,
        bound to ``holder_jwk``: its claims all from the decision (its ``ts`` dates it,
        ``decided_on``) and the documents its rule still requires on that path (the record's).

        A decision has one approval credential. The first time it is asked for it is issued
        and kept in the record (``credential``: the SD-JWT and its anchor's txid, sealed with
        the rest), and handed out only once kept; after that (:meth:`collect`) that same
        credential is given again, proven anew: nothing is anchored, and a revocation or
        suspension of it by its id (``agency status``) reaches whatever its holder collects.
        Each collect issued a new credential, with its own id and status index, that the
        agency's revocation of "the approval" did not reach (helper round 34C)."""
        with self._one_decision(tx.txid):
            rec = self._open(path)  # read again under the lock: a collect at once kept one
            held = rec.get(_CREDENTIAL)
            if held is not None:
                try:
                    anchor, sd_jwt = bytes(held["anchor"]), str(held["sd_jwt"])
                except (KeyError, TypeError) as e:
                    raise StoreError(damaged(f"approval record {path.name}", None,
                                             "holds an unreadable credential member")) from e
                where = self.node.store.tx_location(anchor)
                if where is None:  # kept only once anchored
                    raise StoreError(damaged(f"approval record {path.name}", None,
                                             "holds a credential this node's ledger lacks"))
                return self.node.bundle(where[0], sd_jwt)  # given again: nothing issued
            self._may_decide(self.node._registry(), self.node.now(),
                             "so it cannot issue the approval credential")
            b = tx.body
            bundle, receipt = self.node.issue("approval", {
                "service": b["service"], "decision": b["decision"], "path": b["path"],
                "rule_version": b["rule_hash"].hex(), "approval_tx": tx.txid.hex(),
                "reasons": ",".join(b["reasons"]),
                "documents": ",".join(rec["documents"]) or "none",
                "decided_on": local_day(b["ts"], self.node.zone).isoformat()},
                holder_jwk, 3650)
            try:
                write_atomic(path, self._seal({**rec, _CREDENTIAL: {
                    "anchor": receipt.txid, "sd_jwt": bundle.sd_jwt}}), 0o600)
            except OSError as e:
                _log.error("approval credential not kept", extra={
                    "error": type(e).__name__, "file": path.name})
                raise StoreError(
                    f"the approval credential of the decision {tx.txid.hex()} was issued but "
                    f"cannot be kept in the node's approvals folder "
                    f"({e.strerror or type(e).__name__}), so it is not handed out (a copy "
                    "the agency could not find would escape its revocation): once the disk "
                    f"takes it, collect it (`wallet apply {b['service']} --collect`)") from e
            return bundle

    @contextlib.contextmanager
    def _one_decision(self, txid: bytes) -> Iterator[None]:
        """Held while the approval credential of the decision ``txid`` is issued or given
        again: two collects at once (or a collect during the apply) issue it once."""
        with self._issuing_guard:
            lock, users = self._issuing.get(txid, (threading.Lock(), 0))
            self._issuing[txid] = (lock, users + 1)
        try:
            with lock:
                yield
        finally:
            with self._issuing_guard:
                lock, users = self._issuing[txid]
                if users == 1:
                    del self._issuing[txid]
                else:
                    self._issuing[txid] = (lock, users - 1)

    # -- collecting an approval credential that did not reach its wallet --
    def challenge(self, service: str, audience: str, *,
                  pay: Callable[[int], None] = _free) -> dict[str, Any]:
        """A fresh single-use nonce for :meth:`collect` of ``service``'s approval credential,
        open for REQUEST_TTL seconds (the oldest open one goes past MAX_CHALLENGES)."""
        self._rule(service)  # a service this node decides, or refused in words
        pay(1)
        nonce = secrets.token_urlsafe(16)
        with self._challenging:
            self._expire_challenges()
            while len(self._challenges) >= MAX_CHALLENGES:
                del self._challenges[next(iter(self._challenges))]
            self._challenges[nonce] = (service, self.node.timer())
        return {"service": service, "nonce": nonce, "audience": audience,
                "typ": COLLECT_TYP, "expires": self.node.now() + REQUEST_TTL}

    def _expire_challenges(self) -> None:
        now = self.node.timer()
        while self._challenges:
            first = next(iter(self._challenges))
            if now - self._challenges[first][1] <= REQUEST_TTL:
                break
            del self._challenges[first]

    def _proven(self, service: str, holder_jwk: dict[str, str], proof: str,
                audience: str) -> None:
        """Refuse (ApplicationError, NotFound) unless ``proof`` is a compact JWS of type
        COLLECT_TYP signed by ``holder_jwk`` over an open challenge of ``service`` at
        ``audience``; the challenge is used up by this attempt whatever its outcome."""
        try:
            header, payload, signing_input, signature = sdjwt.parse_jws(proof,
                                                                        "the collect proof")
        except sdjwt.VerificationError as e:
            raise ApplicationError(f"the collect proof is not a compact JWS ({e})") from e
        nonce = payload.get("nonce")
        with self._challenging:
            self._expire_challenges()
            got = self._challenges.pop(nonce, None) if isinstance(nonce, str) else None
        if got is None or got[0] != service:
            raise NotFound("no open collect challenge with this nonce for this service "
                           "(expired, used, or never given): ask for a new one")
        if header.get("typ") != COLLECT_TYP or payload.get("aud") != audience or \
                payload.get("service") != service:
            raise ApplicationError(f"the collect proof must be a {COLLECT_TYP!r} JWS for this "
                                   "node's audience and this service")
        key = sdjwt.public_key_from_jwk(holder_jwk)
        if header.get("alg") not in sdjwt.jws_algs(key) or not sdjwt.jws_verify(
                key, signing_input, signature):
            raise ApplicationError("the collect proof is not signed by the holder key given")

    def collect(self, service: str, holder_jwk: dict[str, Any], proof: str,
                audience: str) -> Decided:
        """The approval credential of this node's newest committed decision on ``service`` of
        an application bound to ``holder_jwk``, given to that key after ``proof`` of its
        possession (:meth:`_proven`): for a wallet the first answer did not reach (the node
        stopped, the answer was lost). The decision's one credential, issued if it has none
        yet (:meth:`_issue_approval`); the decision is not made again. A decision whose record
        is still pending is filed first; the decision is found by the index
        (:meth:`_indexed`), not by opening every record."""
        holder_jwk = sdjwt.public_jwk(holder_jwk)
        self._proven(service, holder_jwk, proof, audience)
        # pending records are few (a decision not yet committed, or not yet filed)
        pendings = [p for p in self._pendings() if self._holds(p, service, holder_jwk)]
        if pendings:
            self.file_pending()
        txids = self._indexed(holder_jwk, service)
        found: tuple[Tx, dict[str, Any]] | None = None
        at: tuple[int, int] = (-1, -1)  # the newest found decision's log entry and height
        for txid in txids:
            where = self.node.store.tx_location(txid)
            if where is None or where[0] <= at[0]:
                continue
            got = self._holds(self._record_path(where[0], txid), service, holder_jwk)
            if got is not None:
                found, at = got, where
        if found is None:
            pending = any(p.exists() for p in pendings)
            keyless = bool(self._indexed(_KEYLESS, service))  # a decision before ADR 78
            raise NotFound(f"this node holds no committed decision on {service!r} of an "
                           "application bound to this holder key" + (
                               " (its decision is not on the ledger: not committed yet, or "
                               "never; ask again later)" if pending else
                               "; its decisions recorded before it kept the applicant's "
                               "holder key (by a version before ADR 78) cannot be collected "
                               "by any key, and their approval credentials cannot be issued "
                               "again" if keyless else ""))
        tx, rec = found
        bundle = self._issue_approval(tx, holder_jwk, self._record_path(at[0], tx.txid))
        outcome = Outcome(tx.body["decision"], tx.body["path"], tuple(tx.body["reasons"]),
                          tuple(rec["documents"]), rec["fired"], rec["expression"])
        return Decided(outcome, service, tx.body["rule_hash"], tx,
                       Receipt(tx.txid, at[0], at[1]), bundle)

    def _record_path(self, index: int, txid: bytes) -> Path:
        """Where the filed record of the decision ``txid`` at log entry ``index`` is."""
        return self.folder / f"{index:012d}-{txid.hex()}.ev"

    # -- the index of decisions by holder key and service --
    def _digest(self, holder_jwk: dict[str, str], service: str) -> str:
        """The name of the index file of ``holder_jwk``'s decisions on ``service``: a keyed
        digest (HMAC with a key derived from the evidence key), as credit subjects are keyed
        pseudonyms, so the names tell no one without the key whose they are."""
        return hmac.new(self._index_key, codec.encode([service, dict(holder_jwk)]),
                        hashlib.sha256).hexdigest()

    def _index_read(self, path: Path) -> list[bytes]:
        """The txids an index file holds; none if it is not there or cannot be read (then
        the index is built again: :meth:`_indexed`)."""
        try:
            got = self._open(path)["txids"]
        except FileNotFoundError:
            return []
        if not isinstance(got, list) or not all(isinstance(t, bytes) for t in got):
            raise DecodeError(f"index file {path.name} holds no txids")
        return list(got)

    def _index_add(self, holder_jwk: dict[str, str], service: str, txid: bytes,
                   record: Path) -> None:
        """Add the committed decision ``txid`` (its record filed at ``record``) to the index.
        The index is complete from the start when this is the folder's first record; if it
        cannot take it, it is marked incomplete, to be built again from the records."""
        index = self.folder / INDEX_FOLDER
        with self._indexing:
            try:
                first = not index.exists() and self._records() == [record]
                index.mkdir(mode=0o700, exist_ok=True)
                path = index / self._digest(holder_jwk, service)
                txids = self._index_read(path)
                if txid not in txids:
                    write_atomic(path, self._seal({"txids": [*txids, txid]}), 0o600)
                covered = self._coverage()
                if first:
                    write_atomic(index / _INDEX_DONE, self._mark(1, record.name), 0o600)
                elif covered is not None and record.name > covered[1]:
                    # one record more; one filed out of order (a pending record filed late)
                    # leaves the count short, and the next collect builds the index again
                    write_atomic(index / _INDEX_DONE,
                                 self._mark(covered[0] + 1, record.name), 0o600)
            except (OSError, LedgerError, KeyError, TypeError) as e:
                self._index_failed("approval index not updated", e)
                with contextlib.suppress(OSError):
                    (index / _INDEX_DONE).unlink(missing_ok=True)

    def _indexed(self, holder_jwk: dict[str, str], service: str) -> list[bytes]:
        """The txids of the committed decisions on ``service`` of applications bound to
        ``holder_jwk``, from the index; built first from every filed record if it is not
        complete (a store from before it, or an update that failed)."""
        path = self.folder / INDEX_FOLDER / self._digest(holder_jwk, service)
        if self._index_sync():
            try:
                return self._index_read(path)
            except (OSError, LedgerError, KeyError, TypeError):
                pass  # an entry damaged: built again
        self.index_all()
        try:
            return self._index_read(path)
        except (OSError, LedgerError, KeyError, TypeError):
            return []

    def _mark(self, count: int, newest: str) -> bytes:
        """The done mark of an index covering ``count`` records, the newest named ``newest``."""
        return key_mark(self._index_key) + f"{count} {newest}".encode()

    def _coverage(self) -> tuple[int, str] | None:
        """How many records the index covers and the newest one's name, from its done mark;
        none if it has none, or one of another key or of a version before it named them."""
        try:
            raw = (self.folder / INDEX_FOLDER / _INDEX_DONE).read_bytes()
        except OSError:
            return None
        mark = key_mark(self._index_key)
        if raw[:len(mark)] != mark:
            return None
        count, _, newest = raw[len(mark):].decode("ascii", "replace").partition(" ")
        if not count.isdigit() or not _RECORD_NAME.fullmatch(newest):
            return None
        return int(count), newest

    def _index_sync(self) -> bool:
        """Make the index hold every filed record, opening only those it does not cover yet
        (filed since its mark: by an older version, a path that does not update it, or after
        ``holders/`` was restored from an older backup); whether it does. Nothing changed
        since the last check (the folders' and the mark's times): nothing listed."""
        index = self.folder / INDEX_FOLDER
        try:
            stats = [p.stat() for p in (self.folder, index, index / _INDEX_DONE)]
            seen = tuple(x for st in stats for x in (st.st_mtime_ns, st.st_ino, st.st_size))
        except OSError:
            seen = None
        if seen is not None and seen == self._synced:
            return True
        records = self._records()
        covered = self._coverage()
        names = [p.name for p in records]
        if covered is not None and covered == (len(names), names[-1] if names else ""):
            done = True
        elif covered is not None and len([n for n in names if n <= covered[1]]) == covered[0]:
            done = self._index_records([p for p in records if p.name > covered[1]], records)
        else:
            return False  # unknown what it covers: built from every record
        # a change in the tick of the last one may not move the times: checked again then
        if done and seen is not None and \
                _time.time_ns() - max(seen[0::3]) > 2_000_000_000:
            self._synced = seen
        return done

    def _index_failed(self, what: str, e: Exception) -> None:
        """Log that the index could not be written, once until it can be again (a full disk:
        every collect then reads every record until it is)."""
        if not self._index_warned:
            self._index_warned = True
            _log.warning(what, extra={"error": type(e).__name__})

    def index_all(self) -> int:
        """Build the index from every filed record of the folder (once for a store from before
        it; one record that cannot be read is left out, and the others go on); how many
        records it holds. The index is marked complete only if it could all be written."""
        records = self._records()
        if not records:  # nothing to index yet: the first record's filing makes it
            return 0
        entries = self._index_entries(records)
        self._index_records(records, records, entries)
        return sum(len(t) for t in entries.values())

    def _index_records(self, paths: list[Path], records: list[Path],
                       entries: dict[str, list[bytes]] | None = None) -> bool:
        """Add the records at ``paths`` to the index and mark it covering ``records`` (every
        filed record, ``paths`` among them); whether it could all be written."""
        index = self.folder / INDEX_FOLDER
        entries = self._index_entries(paths) if entries is None else entries
        with self._indexing:
            try:
                index.mkdir(mode=0o700, parents=True, exist_ok=True)
                for name, txids in entries.items():
                    try:  # entries added meanwhile are kept; a damaged file is made again
                        known = self._index_read(index / name)
                    except (OSError, LedgerError, KeyError, TypeError):
                        known = []
                    write_atomic(index / name, self._seal(
                        {"txids": [*known, *(t for t in txids if t not in known)]}), 0o600)
                if records:
                    write_atomic(index / _INDEX_DONE,
                                 self._mark(len(records), records[-1].name), 0o600)
            except (OSError, LedgerError, KeyError, TypeError) as e:
                self._index_failed("approval index not built", e)
                return False
        self._index_warned = False
        return True

    def _index_entries(self, paths: list[Path]) -> dict[str, list[bytes]]:
        """The index entries of the records at ``paths``: txids by index file name."""
        entries: dict[str, list[bytes]] = {}
        for path in paths:
            try:
                rec = self._open(path)
                tx = Tx.from_bytes(rec["tx"])
                holder = rec.get("holder")  # none: recorded before ADR 78 (34U)
                entries.setdefault(self._digest(
                    holder if isinstance(holder, dict) else _KEYLESS, tx.body["service"]),
                    []).append(tx.txid)
            except (OSError, LedgerError, KeyError, TypeError, AttributeError):
                continue
        return entries

    def _pendings(self) -> list[Path]:
        return sorted(self.folder.glob("*.pending")) if self.folder.exists() else []

    def _holds(self, path: Path, service: str, holder_jwk: dict[str, str]
               ) -> tuple[Tx, dict[str, Any]] | None:
        """The decision and record at ``path`` if it is on ``service`` for ``holder_jwk``."""
        got = self._on(path, service)
        return got if got is not None and got[1].get("holder") == holder_jwk else None

    def _on(self, path: Path, service: str) -> tuple[Tx, dict[str, Any]] | None:
        """The decision and record at ``path`` if it is on ``service`` (a record written before
        ADR 78 has no ``holder``); a record that cannot be read is none (``list`` names it to
        the operator)."""
        try:
            rec = self._open(path)
            tx = Tx.from_bytes(rec["tx"])
            if tx.body["service"] == service:
                return tx, rec
        except (OSError, LedgerError, KeyError, TypeError, AttributeError):
            pass
        return None

    @staticmethod
    def _needed(rule: dict[str, Any], claims: dict[str, dict[str, Any]]
                ) -> dict[str, dict[str, Any]]:
        """Of the verified ``claims``, those ``rule`` needs: what the evidence record keeps
        (a presentation answering a request that asked for more, one opened at the verifier
        desk, disclosed more). ApplicationError for a type the rule does not need."""
        needs = {n["type"]: n["claims"] for n in rule["needs"]}
        extra = sorted(set(claims) - set(needs))
        if extra:
            raise ApplicationError(f"{rule['service']!r} does not need {extra} credentials: "
                                   "present only those its rule needs")
        return {kind: {c: got[c] for c in needs[kind] if c in got}
                for kind, got in claims.items()}

    # -- the agency's records --
    def _keep_pending(self, tx: Tx, evidence: Evidence, outcome: Outcome,
                      holder_jwk: dict[str, str]) -> tuple[Path, dict[str, Any]]:
        """The decision's record before it commits (``<txid>.pending``: no audit reads it):
        its path and the record. ``holder`` is the public holder key the application was bound
        to, what :meth:`collect` finds the decision by: a member audits do not read (they read
        ``tx`` and ``evidence`` alone, this and older versions), sealed with the rest."""
        record = {"v": 1, "tx": tx.raw, "evidence": evidence.to_bytes(), "fired": outcome.fired,
                  "expression": outcome.expression, "documents": list(outcome.documents),
                  "holder": dict(holder_jwk)}
        path = self.folder / f"{tx.txid.hex()}.pending"
        try:
            self.folder.mkdir(mode=0o700, exist_ok=True)
            write_atomic(path, self._seal(record), 0o600)
        except OSError as e:
            # the answer goes to the applicant, who is told no folder of the node's (its
            # operator finds it in the log); an error without strerror names it no more
            _log.error("approval evidence not kept", extra={"error": type(e).__name__,
                                                           "file": str(self.folder)})
            raise StoreError(f"cannot keep the decision's evidence in the node's approvals "
                             f"folder ({e.strerror or type(e).__name__}); nothing was "
                             "decided") from e
        return path, record

    def _keep(self, pending: Path, record: dict[str, Any], receipt: Receipt) -> Path:
        """The committed decision's record (``<index>-<txid>.ev``, what audits read), from its
        pending one; its path. If this fails the pending record stays, and the node's next
        start files it (:meth:`file_pending`)."""
        path = self._record_path(receipt.index, receipt.txid)
        write_atomic(path, self._seal({**record, "index": receipt.index,
                                       "height": receipt.height}), 0o600)
        holder = record.get("holder")
        if isinstance(holder, dict):  # committed decisions alone are indexed
            try:
                service = Tx.from_bytes(record["tx"]).body["service"]
            except (LedgerError, KeyError, TypeError):  # not indexed: built again
                with contextlib.suppress(OSError):
                    (self.folder / INDEX_FOLDER / _INDEX_DONE).unlink(missing_ok=True)
            else:
                self._index_add(holder, service, receipt.txid, path)
        pending.unlink()
        return path

    def _seal(self, record: dict[str, Any]) -> bytes:
        return seal_record(codec.encode(record), self.node.evidence_key)

    def _open(self, path: Path) -> dict[str, Any]:
        """A record of this node's (sealed with its evidence key, or clear from before)."""
        return open_record(path.read_bytes(), self._keys, f"approval record {path.name}")

    def file_pending_hourly(self) -> int:
        """:meth:`file_pending`, if it last ran over an hour ago (or never); else 0. Requests
        come on many threads: one files, the others go on (none waits for it)."""
        if not self._filing.acquire(blocking=False):
            return 0
        try:
            t = _time.monotonic()
            if self._filed_at is not None and t - self._filed_at < 3600:
                return 0
            first = self._filed_at is None
            self._filed_at = t
            filed = self.file_pending()
            if first:  # once a run: a node upgraded past ADR 66 seals what it kept before
                self.seal_clear()
                if not self._index_sync():  # and one from before the index builds it, or
                    self.index_all()  # one that missed records (a rollback) adds them
            return filed
        finally:
            self._filing.release()

    def seal_clear(self) -> int:
        """Seal the records this node wrote in the clear before ADR 66; how many. Each is read
        whole and written again sealed (whole or not at all); one that cannot be stays as it
        is, and the others go on. A sealed record is told by its first bytes, unread."""
        sealed = 0
        for path in self._records():
            try:
                if is_sealed(path):
                    continue
                write_atomic(path, self._seal(self._open(path)), 0o600)
                sealed += 1
            except (OSError, LedgerError) as e:
                _log.warning("approval record not sealed", extra={"error": type(e).__name__,
                                                                  "file": path.name})
        if sealed:
            _log.info("sealed %d approval records written in the clear", sealed)
        return sealed

    def file_pending(self, now: float | None = None) -> int:
        """File the pending records whose decisions the ledger holds (a node stopped, or a
        disk that filled, between the commit and the record); how many. A record whose
        decision is not on the ledger a day after it was written, this copy's head past where
        it could commit, never will be: removed, with the claim values it holds. One record
        that cannot be filed does not stop the others."""
        now = _time.time() if now is None else now
        filed = 0
        for path in sorted(self.folder.glob("*.pending")) if self.folder.exists() else []:
            try:
                txid = bytes.fromhex(path.stem)
                where = self.node.store.tx_location(txid)
                if where is not None:
                    with self._one_decision(txid):  # not while its credential is kept in it
                        if not path.exists():  # filed meanwhile
                            continue
                        self._keep(path, self._open(path), Receipt(txid, where[0], where[1]))
                    filed += 1
                elif now - path.stat().st_mtime > PENDING_DAYS * 86400 and \
                        self._never_committed(path, txid):
                    path.unlink()
            except (OSError, ValueError, LedgerError) as e:
                _log.warning("approval record not filed", extra={"error": type(e).__name__,
                                                                 "file": path.name})
        return filed

    def _never_committed(self, path: Path, txid: bytes) -> bool:
        """Whether the decision of the pending record ``path`` is not on the ledger and never
        will be: this copy's head is past the last block time it could commit at (a decision
        commits within MAX_BACKDATE of its ``ts``, and block times never go back). A node
        started behind (down a day or more) has yet to read blocks that may hold it. A record
        that cannot be read cannot be filed either: True."""
        try:
            ts = Tx.from_bytes(self._open(path)["tx"]).body["ts"]
        except (LedgerError, KeyError, TypeError):
            return True
        head = self.node.store.head  # read before the decision is looked for again
        return head is not None and head.time > ts + MAX_BACKDATE and \
            self.node.store.tx_location(txid) is None

    def _records(self) -> list[Path]:
        return sorted(self.folder.glob("*.ev")) if self.folder.exists() else []

    def _read(self, path: Path) -> tuple[Tx, dict[str, Any]]:
        """A filed record's decision and the record; StoreError naming the file and what is
        wrong if it cannot be read (this node's own record: not a client's 400)."""
        try:
            rec = self._open(path)
            return Tx.from_bytes(rec["tx"]), rec
        except (DecodeError, KeyError, TypeError, AttributeError) as e:
            why = str(e) if isinstance(e, LedgerError) else type(e).__name__
            raise StoreError(damaged(f"approval record {path.name}", None,
                                     f"cannot be read ({why})")) from e

    def list(self) -> list[dict[str, Any]]:
        """Every decision this node made, oldest first (no claim values). A record that cannot
        be read is listed as damaged (its file, its decision's id when the name holds one, and
        what is wrong), and the others still are: one record damaged on disk, or a stray file,
        hid every decision."""
        out: list[dict[str, Any]] = []
        for p in self._records():
            named = _RECORD_NAME.fullmatch(p.name)
            try:
                if named is None:
                    raise StoreError(damaged(f"approval record {p.name}", None, "cannot be read "
                                             "(its name is not <index>-<transaction id>.ev)"))
                tx, rec = self._read(p)
                b = tx.body
                out.append({"approval_tx": named[1], "index": rec["index"],
                            "height": rec["height"], "service": b["service"],
                            "rule_hash": b["rule_hash"].hex(), "decision": b["decision"],
                            "path": b["path"], "reasons": b["reasons"], "ts": b["ts"],
                            "credential_id": self._credential_id(rec)})
            except (OSError, LedgerError, KeyError) as e:  # _read's words, else said so
                why = str(e) if isinstance(e, LedgerError) else type(e).__name__
                out.append({"file": p.name, "damaged": str(e) if isinstance(e, StoreError)
                            else damaged(f"approval record {p.name}", None,
                                         f"cannot be read ({why})")}
                           | ({} if named is None else {"approval_tx": named[1]}))
        return out

    def record(self, txid: str) -> tuple[Tx, bytes, dict[str, Any]]:
        for p in self._records():
            if p.stem.endswith(txid):
                tx, rec = self._read(p)
                return tx, rec["evidence"], rec
        raise NotFound(f"this node made no approval {txid}")

    def explain(self, txid: str) -> dict[str, Any]:
        """Which inputs, which expression, which reason (holds claim values: operator only)."""
        tx, ev_bytes, rec = self.record(txid)
        ev = Evidence.from_bytes(ev_bytes)
        reg = self.node.store.registry
        rule = None if reg is None else reg.rule_by_hash(tx.body["rule_hash"])
        if rule is None:
            raise NotFound("the approval's rule version is not in the registry")
        fired = rec["fired"]
        which = (f"clauses[{fired}]" if fired >= 0 else "otherwise" if fired == -1
                 else "run-time error")
        # clauses are tried in order and the first true one decides: those before it (all of
        # them, for "otherwise") were false, which is why it was decided so
        tried = fired if fired >= 0 else len(rule["clauses"]) if fired == -1 else 0
        not_met = [{"clause": i, "when": c["when"], "decision": c["decision"],
                    "reason": c["reason"]} for i, c in enumerate(rule["clauses"][:tried])]
        # "height" and "time": where the evidence was read (the state the rule saw); the
        # block the decision is in, the list's "height", is "in_block" (helper round 36D)
        return {"approval_tx": txid, "service": ev.service, "rule_hash": ev.rule_hash.hex(),
                "rule_title": rule["title"], "height": ev.height, "time": ev.time,
                "in_block": rec["height"],
                "decision": tx.body["decision"], "path": tx.body["path"],
                "reasons": tx.body["reasons"], "documents": rec["documents"],
                "decided_by": which, "expression": rec["expression"], "not_met": not_met,
                "inputs": {"claims": {k: dict(v) for k, v in ev.claims.items()},
                           "credit": dict(ev.credit),
                           "params": {p["name"]: next(v for k, v in p.items() if k != "name")
                                      for p in rule["params"]}},
                "evidence_digest": ev.digest.hex(), "credential_id": self._credential_id(rec)}

    def _credential_id(self, rec: dict[str, Any]) -> str | None:
        """The id of the decision's one approval credential (hex; what `agency status
        --credential-id` revokes), once issued and kept in its record; else None (not issued
        yet, or issued before records kept it)."""
        try:
            anchor = self.node.store.tx(bytes(rec[_CREDENTIAL]["anchor"]))
            cid = None if anchor is None else anchor.body.get("credential_id")
        except (LedgerError, KeyError, TypeError):
            return None
        return cid.hex() if isinstance(cid, bytes) else None

    # -- credit records --
    def _secret(self) -> bytes:
        if self.node.credit_secret is None:
            raise LedgerError("this node holds no network credit secret "
                              f"({SECRET_FILE} in its keys folder)")
        return self.node.credit_secret

    def _network_secret(self) -> bytes:
        """:meth:`_secret`, refused (ApplicationError) while its peers publish another one: a
        node so keyed recorded events under pseudonyms no one's record reaches (on the ledger
        for good, counting for nobody) and read a clean record for anyone."""
        secret = self._secret()
        problem = self.node.credit_problem()  # with a secret: None, or another one's peers
        if problem:
            raise ApplicationError(problem)
        return secret

    def record_credit(self, subject: str, *, reason: str, category: str | None = None,
                      points: int | None = None, date: int | None = None,
                      expiry: int | None = None, valid_days: int | None = None,
                      withdraws: bytes | None = None) -> Receipt:
        """Record a credit event of this agency about ``subject`` (the identifier an identity
        credential carries: a person-id's number, a business's registration number), signed
        with its issuing key; the ledger keeps the keyed pseudonym only. With ``withdraws``,
        withdraw this agency's earlier event of that subject instead (0 points, its category).
        ``reason`` is a public code, never free text; ``date`` defaults to the node's now (no
        later than its block's time, as the ledger requires), and ``expiry`` may be given as
        ``valid_days`` from it."""
        problem = reason_code_problem(reason)
        if problem is not None:
            raise ApplicationError(f"reason: {problem}")
        try:
            subject_key = pseudonym(subject, self._network_secret())
        except LedgerError as e:
            raise ApplicationError(str(e)) from e
        now = self.node.now()
        if withdraws is not None:
            given = [name for name, v in (("category", category), ("points", points),
                                          ("date", date), ("expiry", expiry),
                                          ("valid_days", valid_days)) if v is not None]
            if given:  # as if it amended the event: withdrawn, and the rest ignored
                raise ApplicationError(f"a withdrawal takes no {', '.join(given)}: it has the "
                                       "withdrawn event's own (to correct an event, withdraw "
                                       "it, then record the corrected one)")
            event = next((e for e in credit_events(self.node.store, subject_key)
                          if e.txid == withdraws), None)
            if event is None:
                raise NotFound("this subject has no credit event with that id")
            body = {"subject": subject_key, "category": event.category, "points": 0,
                    "reason": reason, "date": event.date, "expiry": event.expiry, "ts": now,
                    "withdraws": withdraws}
        else:
            # the ledger refuses an event dated after its block: by default it is dated now, or
            # at that block's time if earlier (this clock fast: its batch takes its peers' time)
            when = min(now, self.node.block_time_now()) if date is None else date
            if expiry is not None and valid_days is not None:  # which did the operator mean?
                raise ApplicationError("give the event's expiry or valid_days, not both")
            if expiry is None and valid_days is not None:
                expiry = when + valid_days * 86400
            if category is None or points is None or expiry is None:
                raise ApplicationError("a credit event needs its category, points and expiry "
                                       "(or valid_days)")
            if expiry <= now:  # the ledger takes it, and it counts for nothing (ADR 70)
                raise ApplicationError(f"the event's expiry ({utc_text(expiry)}) is already "
                                       "past: it would never count; give a later one")
            body = {"subject": subject_key, "category": category, "points": points,
                    "reason": reason, "date": when, "expiry": expiry, "ts": now}
        tx = make_tx(self.node.network, "credit", body, [self.node.issuer_key])
        return self.node.commit(tx, "the credit event", "look it up (GET /v1/tx/<txid>) "
                                "before sending it again: a second event would count twice")

    def credit_request(self, kind: str, audience: str, *,
                       pay: Callable[[int], None] = _free) -> PendingRequest:
        if kind not in IDENTITY:
            raise ApplicationError(f"{kind!r} is not an identity credential type "
                                   f"({sorted(IDENTITY)})")
        self._network_secret()  # before an identifier is asked for that could find nothing
        pay(1)
        return self.node.new_request(kind, [IDENTITY[kind]], audience, purpose=CREDIT_RECORD)

    def credit_record(self, nonce: str, envelope: bytes) -> dict[str, Any]:
        """The proven subject's own events and score at the head, for the answer to a request
        opened for it (:meth:`credit_request`): a presentation shown to the desk, or for an
        application, reads no one's record."""
        pending = self.node.request(nonce, purpose=None)
        kind = pending.request.credential_type
        if pending.purpose != CREDIT_RECORD or kind not in IDENTITY \
                or IDENTITY[kind] not in pending.request.claims:
            raise ApplicationError("this request is not a credit record request: it must ask "
                                   "for a person-id or business-id credential's identifier "
                                   "(get one from /v1/credit/requests)")
        secret = self._network_secret()  # before the presentation is taken
        report = self.node.verify(envelope, nonce, CREDIT_RECORD)
        if not report.verified:
            raise ApplicationError("the identity presentation did not verify")
        subject = pseudonym(str(report.claims[IDENTITY[kind]]), secret)
        store = self.node.store
        head = self.node._head()
        # the policy in force at that head, as apply reads it: a policy changed in a block
        # committed meanwhile scored the old head under the new policy (ADR 70)
        policy = store.registry_at(head.height).credit_policy()
        if policy is None:
            raise NotFound("no credit policy is registered")
        s = summary(store, policy, subject, height=head.height, time=head.time)
        return {"height": head.height, "score": s.score, "last_serious": s.last_serious,
                "events": [{"event": e.txid.hex(), "agency": e.agency, "category": e.category,
                            "points": e.points, "reason": e.reason, "date": e.date,
                            "expiry": e.expiry, "withdrawn_by": e.withdrawn_by.hex() or None}
                           for e in credit_events(store, subject)]}
