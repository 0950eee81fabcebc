"""The node's HTTP API, versioned under ``/v1`` (plus ``/metrics``).

Reads are public. ``POST /v1/tx`` is public too: a transaction carries its own signatures, which
the state machine checks. Issuing a credential and changing a status act *for this node's agency*
and need the operator's bearer token. Pydantic models here describe HTTP bodies only; the domain
values are the ledger's own types. Errors are raised as :mod:`ledger.errors` classes and mapped
to statuses in :mod:`node.app`.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import hmac
import json
import logging
import math
import re
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Annotated, Any, Final, Literal

import segno
from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request
from fastapi.concurrency import iterate_in_threadpool, run_in_threadpool
from fastapi.exception_handlers import http_exception_handler
from fastapi.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from fastapi.routing import APIRoute
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, ConfigDict, Field, model_validator
from starlette.exceptions import HTTPException as StarletteHTTPException

from ledger import codec
from ledger.credentials import RESERVED_TYPES, STATUS_LISTS
from ledger.errors import DecodeError, LedgerError
from ledger.files import NOT_UNICODE
from ledger.foreign import MAX_VCT, TrustList, read_status_tokens
from ledger.network import free_text_reason, rule_cost_of, rule_text_problem
from ledger.ordering import Receipt
from ledger.presentation import Bundle, Report
from ledger.sdjwt import MemberTwice, members_once
from ledger.state import MAX_BACKDATE, rules_changes_since
from ledger.tx import Tx
from node.config import Settings
from node.etcdlog import NoSpace
from node.ratelimit import BATCH_ITEMS_PER_TOKEN, charge
from node.replication import NOSPACE_FIX, SYNC_HEADERS, Unconfirmed
from node.service import Node, NotFound

__all__ = ["BadRequest", "router"]

MAX_INT = 2**63 - 1
HEX64 = r"^[0-9a-f]{64}$"
NAME = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"


class BadRequest(LedgerError):
    """A request whose parameters do not fit together (mapped to 400)."""


# -- dependencies --------------------------------------------------------------------------------

def _node(request: Request) -> Node:
    node: Node = request.app.state.node
    return node


def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


_bearer = HTTPBearer(auto_error=False, description="The operator token `ledger-node init` printed.")


def _operator(request: Request,
              credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
              ) -> None:
    expected = _settings(request).operator_token_sha256
    if expected is None:
        raise HTTPException(403, "operator endpoints are off on this node "
                                 "(no operator_token_sha256 in its config)")
    given = "" if credentials is None else credentials.credentials
    digest = hashlib.sha256(given.encode()).hexdigest()
    if credentials is None or not hmac.compare_digest(digest, expected):
        raise HTTPException(401, "a valid operator bearer token is required",
                            headers={"WWW-Authenticate": "Bearer"})


NodeDep = Annotated[Node, Depends(_node)]
SettingsDep = Annotated[Settings, Depends(_settings)]
Operator = Annotated[None, Depends(_operator)]


# -- HTTP schemas --------------------------------------------------------------------------------

class _Out(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ErrorBody(_Out):
    detail: str | list[Any]
    error: str | None = None
    code: str | None = None
    taken: Literal[False] | None = Field(
        default=None, description="Only in a 5xx, and only false: the node handed nothing of "
                                  "this request on (nothing written to its store, put in etcd "
                                  "or queued to its writer), so sending it again is safe. "
                                  "Absent where the node cannot know (a put or a commit wait "
                                  "that ran out: it may be done yet)")


class PeerOut(_Out):
    height: int
    log_size: int
    revision: int
    lag: int
    updated: int | None = Field(
        default=None, description="When that node last said where it stands (Unix time, by "
                                  "its clock): a stopped node's figures stay as they were")
    quiet: int | None = Field(
        default=None, description="Seconds since its published position last changed, by "
                                  "this node's clock: a node that runs says where it stands "
                                  "at least every 10 s, so past 35 s it is down, cut off from "
                                  "etcd, or no longer applying (health: degraded)")


class Health(_Out):
    status: Literal["ok", "degraded", "halted"] = Field(
        description="ok; degraded (problem says why): the node's replication steps are "
                    "failing (it serves reads, new transactions wait), it is catching up "
                    "(not at the network's head for over 10 s), its latest checkpoint "
                    "is not final now (a solo node short of current node keys), or the "
                    "chain's time runs ahead of its clock (a fast clock somewhere); halted: "
                    "it found its chain is a fork and applies nothing, or (solo) it could not "
                    "write a block (a full disk) and takes nothing until it is restarted "
                    "(HTTP 503)")
    agency: str
    network: str
    height: int
    log_size: int
    ordering: Literal["solo", "etcd"] = "solo"
    final_log_size: int | None = None
    peers: dict[str, PeerOut] = Field(default_factory=dict)
    halted: str | None = None
    fork_evidence_published: bool | None = Field(
        default=None, description="A node halted on a fork: whether etcd holds its own "
                                  "co-signature at the fork's size, from which its peers name "
                                  "the fork (false: it puts it again, at most once a second); "
                                  "null when not halted on a fork, or when its store holds no "
                                  "co-signature of its own at that size (its log says so)")
    problem: str | None = None


class ClusterOut(_Out):
    agency: str
    ordering: str
    revision: int
    height: int
    log_size: int
    final_size: int
    halted: str | None
    fork_evidence_published: bool | None = None
    peers: dict[str, dict[str, Any]]
    counters: dict[str, int]
    last_error: str
    failing_since: float | None = None
    reads_failing_since: float | None = Field(
        default=None, description="Since when (Unix time) this node cannot read the ordered "
                                  "batches from etcd; past 10 s it refuses submissions (503, "
                                  "Retry-After); null while it can")
    put_failing_since: float | None = Field(
        default=None, description="Since when (Unix time) this node's batches cannot be put "
                                  "into etcd (e.g. a NOSPACE alarm); null while they can")
    put_error: str = ""
    nospace_since: float | None = Field(
        default=None, description="Since when (Unix time) etcd has refused this node's writes "
                                  "with its NOSPACE alarm; the node refuses submissions "
                                  "meanwhile (503, Retry-After); null while it does not")
    paced_until: float | None = Field(
        default=None, description="Until when (Unix time) this node puts at most one batch "
                                  "every 0.5 s, after etcd's NOSPACE alarm cleared; null when "
                                  "it is not pacing")
    unfinal_since: float | None = Field(
        default=None, description="Since when (Unix time) the head has had no final "
                                  "checkpoint; null while it has one")
    current_at: int | None = Field(
        default=None, description="When (Unix time, by this node's clock) this node last "
                                  "read the network's ordered batches to their end, all "
                                  "applied; null when it has not since it started. Over 10 s "
                                  "ago: health says it is catching up (degraded)")
    quiet_peers: dict[str, int] = Field(
        default_factory=dict, description="Current agencies whose node has said nothing for "
                                          "over 35 s, and for how many seconds")
    member: bool = Field(
        default=True, description="Whether this node's key is a current node key of the "
                                  "network (else it co-signs nothing and publishes nothing)")
    own_etcd_down_since: float | None = Field(
        default=None, description="Since when (Unix time) the first etcd endpoint, the agency's "
                                  "own member, has not answered; null while it answers")
    evidence_held: int = Field(
        default=0, description="Equivocation evidence records this node holds (kept for good; "
                               "GET /v1/evidence)")
    older_peers: list[str] = Field(
        default_factory=list, description="Current agencies whose node's newest co-signature "
                                          "is of a version before ADR 60 (it names no block): "
                                          "while versions are mixed each counts only its own "
                                          "version's co-signatures (README, Upgrading)")
    rules: int = Field(
        default=0, description="The version of the consensus rules this node applies (ADR 77)")
    other_rules: dict[str, int] = Field(
        default_factory=dict,
        description="Current agencies whose node, heard from lately, publishes other consensus "
                    "rules than this one (0: a version before ADR 77): while versions are "
                    "mixed, what they judge differently must not be sent to any node (README, "
                    "Upgrading)")
    settings: dict[str, int] = Field(
        default_factory=dict,
        description="max_batch (transactions per etcd batch at most) and retention (blocks a "
                    "lagging member may fall behind etcd)")


class BlockHeader(_Out):
    v: int
    net: str
    height: int
    prev_hash: str
    time: int
    first_index: int
    tx_count: int
    log_size: int
    log_root: str
    hash: str


class TxView(_Out):
    txid: str
    net: str
    type: str
    body: dict[str, Any]
    signers: list[str]


class CommittedTx(TxView):
    index: int
    height: int


class BlockView(_Out):
    header: BlockHeader
    transactions: list[TxView]


class ReceiptOut(_Out):
    txid: str
    index: int
    height: int
    duplicate: bool


class Pending(_Out):
    txid: str
    status: Literal["pending"]
    receipt: str = Field(description="Poll this URL: 200 with the receipt once committed.")


class BatchItem(_Out):
    txid: str | None
    status: Literal["committed", "rejected", "pending", "malformed"]
    index: int | None = None
    height: int | None = None
    duplicate: bool | None = None
    error: str | None = None
    code: str | None = None
    taken: Literal[False] | None = Field(
        default=None, description="Only false, and only where the node knows it handed "
                                  "nothing of this item on (the cases where POST /v1/tx "
                                  "answers a 5xx with \"taken\": false): sending it again is "
                                  "safe. Absent where the node cannot know")


class InclusionProof(_Out):
    index: int
    size: int
    root: str = Field(description="Standard base64 of the tree root at `size`.")
    proof: list[str] = Field(description="RFC 9162 inclusion path, standard base64 hashes.")


class ConsistencyProof(_Out):
    old: int
    new: int
    old_root: str
    new_root: str
    proof: list[str] = Field(description="RFC 9162 consistency proof, standard base64 hashes.")


class RegistryOut(_Out):
    network: str
    quorum: int
    gov_seq: int
    height: int


class AgencyOut(_Out):
    id: str
    name: str
    added: int
    removed: int | None
    current: bool
    note_vkey: str | None


class KeyOut(_Out):
    kid: str
    agency: str
    role: str
    public_key: str
    valid_from: int
    invalid_from: int | None


class IssueIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: str = Field(max_length=64)
    claims: dict[str, Any]
    holder_jwk: dict[str, str]
    valid_days: int = Field(default=365, ge=1, le=3650)


class Issued(_Out):
    credential_id: str
    bundle: str = Field(description="The holder's bundle (canonical msgpack), base64url.")
    receipt: ReceiptOut


class StatusIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    status: Literal["valid", "revoked", "suspended"]
    reason: str = Field(min_length=1, max_length=64, description=(
        "A reason code: lowercase letters, digits, '.', '_' or '-' (e.g. withdrawn). Public "
        "on the ledger for good: never a name or other personal detail (400 otherwise)."))


class RequestIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    # a type from outside the network (its vct) may be as long as a trust list and a verifier
    # take it; the network's own type ids are shorter
    type: str = Field(max_length=MAX_VCT)
    claims: list[str] = Field(min_length=1, max_length=32)


class RequestOut(_Out):
    nonce: str
    audience: str
    type: str
    claims: list[str]
    created: int
    expires: int
    qr_svg: str | None = Field(description="The request as a QR code (SVG text); null when "
                                           "it is too long for one code (a type from outside "
                                           "the network with long claim names): give its JSON "
                                           "as text.")


class VerifyIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    nonce: str = Field(min_length=1, max_length=128)
    envelope: str | None = Field(default=None, min_length=1, max_length=64 * 1024,
                                 description="The presentation envelope, base64url.")
    sd_jwt: str | None = Field(
        default=None, min_length=1, max_length=64 * 1024,
        description="Instead of an envelope: the SD-JWT+KB of a credential from an issuer "
                    "outside the network, checked against the node's trust list (ADR 39).")

    @model_validator(mode="after")
    def _one_presentation(self) -> VerifyIn:
        if (self.envelope is None) == (self.sd_jwt is None):
            raise ValueError("give exactly one of envelope (a credential of the network) or "
                             "sd_jwt (one from an issuer outside it)")
        return self


class CheckOut(_Out):
    check: str
    ok: bool
    detail: str


class ReportOut(_Out):
    verified: bool
    status: str
    checks: list[CheckOut]
    claims: dict[str, Any]


class MsgpackResponse(Response):
    media_type = "application/msgpack"


class StatusListTokenResponse(Response):
    media_type = "application/statuslist+jwt"


async def http_error(request: Request, exc: Exception) -> Response:
    """The API's answer to an HTTP error Starlette or FastAPI raise. FastAPI's words for a JSON
    body it could not parse other than by a syntax error (a RecursionError: nested thousands
    deep) say nothing of why; ours do, in our shape."""
    assert isinstance(exc, StarletteHTTPException)  # registered for it only
    if exc.status_code == 400 and exc.detail == "There was an error parsing the body":
        _log.info("refused", extra={"error": "BadRequest", "status": 400})
        # FastAPI raises it from what went wrong: bytes that are not UTF-8 (nor the UTF-16
        # or -32 that Python's JSON reader also takes) fail before any nesting is seen
        why = ("its bytes are not UTF-8 text" if isinstance(exc.__cause__, UnicodeError)
               else "nested too deeply?")
        return JSONResponse({"detail": f"the request body could not be read as JSON ({why})",
                             "error": "BadRequest"}, status_code=400)
    return await http_exception_handler(request, exc)


def _errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    return {c: {"model": ErrorBody} for c in codes}


def _binary(media: str) -> dict[int | str, dict[str, Any]]:
    """A non-JSON 200 response; its errors stay JSON (``model`` would document them as
    ``media``, the route's response class)."""
    error = {"content": {"application/json": {
        "schema": {"$ref": "#/components/schemas/ErrorBody"}}}}
    return {200: {"content": {media: {"schema": {"type": "string"}}}},
            **dict.fromkeys((400, 404, 413, 429, 503), error)}


class _OneReadingRequest(Request):
    """A request whose JSON body has one reading: a member named twice in an object is
    refused, where Python's reader keeps the last (a proxy or a log reading the first would
    see another request than the node decides on)."""

    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            body = await self.body()
            try:
                self._json = json.loads(body, object_pairs_hook=members_once)
            except MemberTwice:  # FastAPI's 422 for a body that is no JSON, in words
                # Not named: it may be a member of a claim's value (a 422 never echoes input)
                raise json.JSONDecodeError("a member name appears twice in one object",
                                           "", 0) from None
        return self._json


class OneReadingRoute(APIRoute):
    """The API's routes: their JSON bodies are read by :class:`_OneReadingRequest`."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def read_once(request: Request) -> Response:
            return await handler(_OneReadingRequest(request.scope, request.receive))

        return read_once


# 429: the rate limiter stands before every route (node.ratelimit); probes are spared
router = APIRouter(responses=_errors(400, 404, 413, 429, 503), route_class=OneReadingRoute)


# -- helpers -------------------------------------------------------------------------------------

def _b64(h: bytes) -> str:
    return base64.b64encode(h).decode("ascii")


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _finite(value: Any) -> Any:
    """``value`` with every non-finite float written as text (JSON has no NaN or Infinity)."""
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


async def validation_error(request: Request, exc: Exception) -> Response:
    """FastAPI's 422 for a request that does not fit its schema, able to say so also when the
    request held ``1e999`` or ``NaN`` (the default answered 500 trying to echo it)."""
    from fastapi.encoders import jsonable_encoder
    from fastapi.exceptions import RequestValidationError

    assert isinstance(exc, RequestValidationError)  # registered for it only
    # The input is named, never echoed: a claim value, a citizen's identifier or a whole
    # presentation sent in the wrong shape would come back in the answer (and in any proxy's
    # log of it); an object or array nested a thousand deep parsed (how deep Python's parser
    # goes depends on the version), then overflowed the encoder here and answered 500.
    errors = [{**e, "input": _kind(e["input"])} if "input" in e else e for e in exc.errors()]
    if any(e.get("type") == "string_unicode" for e in errors):  # a JSON "\ud800" escape
        return JSONResponse({"detail": NOT_UNICODE, "error": "UnicodeEncodeError"},
                            status_code=400)
    try:
        detail = _finite(jsonable_encoder(errors))
    except RecursionError:
        return JSONResponse({"detail": "the request body is nested too deeply",
                             "error": "BadRequest"}, status_code=400)
    return JSONResponse({"detail": detail}, status_code=422)


def _kind(value: object) -> str:
    """What a request's value was, without the value (``validation_error``)."""
    if isinstance(value, dict):
        return f"an object of {len(value)} members"
    if isinstance(value, list):
        return f"an array of {len(value)} items"
    if isinstance(value, str):
        return f"a string of {len(value)} characters"
    if isinstance(value, bool):
        return "true or false"
    if isinstance(value, int | float):
        return "a number"
    return "null" if value is None else f"a {type(value).__name__}"


CLOCK_SLACK = 60
"""Seconds the chain's time may run ahead of a node's clock before its health says so."""
OWN_ETCD_SLACK = 15
"""Seconds the agency's own etcd member may not answer (an election, a restart) before health
says so."""
CURRENT_SLACK = 10
"""Seconds since a replicated node last read the network's ordered batches to their end, all
applied, before its health says it is behind (a node that keeps up reaches the end at each step:
under load too, in well under a second; ADR 76)."""
FINALITY_SLACK = 30
"""Seconds a replicated node's head may go without a final checkpoint before its health says
so (co-signatures of a healthy network follow each block within a second)."""


def _from_b64url(text: str, what: str) -> bytes:
    bare = text.rstrip("=")
    if not re.fullmatch(r"[A-Za-z0-9_-]*", bare):
        raise BadRequest(f"{what}: not base64url")
    try:
        return base64.urlsafe_b64decode(bare + "=" * (-len(bare) % 4))
    except (binascii.Error, ValueError) as e:
        raise BadRequest(f"{what}: not base64url") from e


def _log_size(node: Node) -> int:
    return int(node.head()["log_size"])


def _receipt(r: Receipt) -> ReceiptOut:
    return ReceiptOut(txid=r.txid.hex(), index=r.index, height=r.height, duplicate=r.duplicate)


# -- chain ---------------------------------------------------------------------------------------

_Status = Literal["ok", "degraded", "halted"]


def cluster_health(node: Node, cluster: dict[str, Any], head: dict[str, Any],
                   skew: str | None) -> tuple[_Status, str | None]:
    """A multi-agency node's status and the problem it has, the most pressing first (what
    /v1/health says, and /metrics counts)."""
    quiet = cluster.get("quiet_peers") or {}
    if cluster["halted"]:
        return "halted", cluster["halted"]
    if cluster.get("nospace_since"):  # before failing steps: a prune fails the same way
        return "degraded", ("etcd's NOSPACE alarm is raised: this node refuses submissions "
                            f"(503) until it clears; {NOSPACE_FIX}")
    if cluster.get("failing_since"):
        return "degraded", cluster["last_error"] or "replication steps are failing"
    if cluster.get("put_failing_since"):
        return "degraded", (f"batches cannot be put into etcd: "
                            f"{cluster.get('put_error') or 'unknown error'}")
    if cluster.get("member") is False:
        return "degraded", (
            f"this node's key is not a current node key of the network for {node.agency} at "
            f"its head (height {head['height']}): it was invalidated or rotated, or the agency "
            "removed; or it is a new key put in place before its rotate_key committed, or the "
            "node of a newly added agency not yet caught up to its add_agency. The node "
            "applies blocks but signs none of them, and its peers hear nothing from it: put "
            "the node key file the registry names in place and restart the node (a new key "
            "once its rotate_key is committed; a new agency's node signs once it has caught "
            "up)")
    behind = _behind(node, cluster, head)
    if behind:
        return "degraded", behind
    own = cluster.get("own_etcd_down_since")
    if own and node.now() - own > OWN_ETCD_SLACK:
        return "degraded", (f"this agency's own etcd member (the first etcd endpoint) has not "
                            f"answered for {int(node.now() - own)} s; the node uses the "
                            "others meanwhile, and the network has one member less to spare")
    if quiet:
        stale = node.keys_gone_quiet(quiet)
        if stale:
            return "degraded", ("no word from the node of " + ", ".join(
                f"{a} for {quiet[a]} s" for a in sorted(stale)) + ": its node key was "
                "rotated or invalidated by governance about then; it co-signs nothing until "
                "its agency puts the current node key file in place and restarts it")
        return "degraded", ("no word from the node of " + ", ".join(
            f"{a} for {s} s" for a, s in sorted(quiet.items())) + " (down, cut off from "
            "etcd, or no longer applying; or, while an idle network is being upgraded, a "
            "node of a version before ADR 50, which says nothing between blocks): the "
            "network has less to spare before it loses its quorum")
    older = cluster.get("older_peers") or []
    if older:
        return "degraded", (
            "the newest co-signature of the node of " + ", ".join(older) + " names no block: "
            "a version before ADR 60 (or one upgraded that has signed nothing since). "
            "Co-signatures of the two versions do not count for each other, so a checkpoint "
            "is final only where a quorum of nodes runs one "
            f"version (final size here {cluster['final_size']}, log size {head['log_size']}); "
            "go on upgrading one agency at a time until every node runs this version (README, "
            "Upgrading)")
    rules = _other_rules(cluster)
    if rules:
        return "degraded", rules
    if cluster.get("unfinal_since") and node.now() - cluster["unfinal_since"] > FINALITY_SLACK:
        return "degraded", (f"no final checkpoint for "
                            f"{int(node.now() - cluster['unfinal_since'])} s (final size "
                            f"{cluster['final_size']}, log size {head['log_size']}): fewer "
                            "than the quorum of agency nodes are co-signing (are peers down?)")
    credit = node.credit_problem() or node.issuer_problem() or node.tls_problem()
    if credit:
        return "degraded", credit
    clocks = peer_clocks_problem(node.agency, cluster.get("peers") or {})
    if skew or clocks:
        return "degraded", "; ".join(p for p in (skew, clocks) if p)
    return "ok", None


def _other_rules(cluster: dict[str, Any]) -> str | None:
    """Which peers' nodes run other consensus rules than this one, and what the older ones
    judge differently (ADR 77); None when all run this node's."""
    ours, other = cluster.get("rules") or 0, cluster.get("other_rules") or {}
    older = {a: r for a, r in other.items() if r < ours}
    newer = {a: r for a, r in other.items() if r > ours}
    said = []

    def named(peers: dict[str, int]) -> str:
        return ", ".join(f"{a} (rules {r}{', a version before ADR 77' if r == 0 else ''})"
                         for a, r in sorted(peers.items()))
    if older:
        changes = "; ".join(rules_changes_since(min(older.values())))
        said.append(
            f"the node of {named(older)} runs older consensus rules than this node's {ours}, "
            f"which judge some transactions differently ({changes}). "
            "While versions are mixed send none of those to any node: the two versions would "
            "build different blocks, and a node outvoted halts as a fork. Go on upgrading one "
            "agency at a time until every node runs this version (README, Upgrading)")
    if newer:
        said.append(f"the node of {named(newer)} runs newer consensus rules than this node's "
                    f"{ours}: upgrade this node (README, Upgrading)")
    return "; ".join(said) or None


def _behind(node: Node, cluster: dict[str, Any], head: dict[str, Any]) -> str | None:
    """Why a replicated node is not known to be at the network's head, from its own reads of
    etcd (the order every node applies; a peer's published position is any etcd writer's word
    and is only quoted): None when it read the ordered batches to their end, all applied, in
    the last :data:`CURRENT_SLACK` seconds. A node catching up after a stop, from etcd or from
    a peer past the retention window, serves the older head it has meanwhile."""
    at = cluster.get("current_at")
    if at is not None and node.now() - at <= CURRENT_SLACK:
        return None
    since = ("since it started" if at is None
             else f"for {int(node.now() - at)} s")
    peers = [p["height"] for a, p in (cluster.get("peers") or {}).items()
             if a != node.agency and isinstance(p.get("height"), int)]
    said = (f"; its peers published heights up to {max(peers)}"
            if peers and max(peers) > head["height"] else "")
    return (f"behind: this node has not read the network's ordered batches to their end "
            f"{since} (its head: height {head['height']}, log size {head['log_size']}{said}): "
            "it is catching up, or its reads of etcd hang; it serves that older head "
            "meanwhile. Wait for `ok` before stopping another agency's node (README, "
            "Upgrading)")


def peer_clocks_problem(agency: str, peers: dict[str, Any]) -> str | None:
    """Which clock is off, from the wall-clock times the current agencies' nodes publish with
    their positions (``clock_ahead``: a peer's published time plus how long ago this node
    heard it, less this node's clock; only for peers heard from lately): None if each is
    within :data:`CLOCK_SLACK`. Block times follow the proposer's clock (ADR 43): a fast node
    itself saw nothing wrong, and the others could not say whose clock it was.

    This machine's clock is said to be off only when most of two or more peers' clocks are
    off it the same way, as :meth:`node.replication.EtcdOrderer.batch_time_now` (which takes
    their time only then) judges it: with one peer's clock alone (two nodes, or the others
    quiet) nothing says which of the two is right, and peers off either way are named."""
    off = {a: int(p["clock_ahead"]) for a, p in peers.items()
           if a != agency and type(p.get("clock_ahead")) is int}
    odd = {a: d for a, d in off.items() if abs(d) > CLOCK_SLACK}
    if not odd:
        return None
    for side in ({a: d for a, d in odd.items() if d > 0}, {a: d for a, d in odd.items() if d < 0}):
        if len(off) >= 2 and 2 * len(side) > len(off):  # most of the others, one way
            ahead = sorted(-d for d in side.values())[len(side) // 2]
            return (f"this machine's clock is {abs(ahead)} s "
                    f"{'ahead of' if ahead > 0 else 'behind'} the clocks of the nodes of "
                    f"{', '.join(sorted(side))} (by the times they publish): set it right "
                    "(NTP). Block times follow the clock of the node that proposes: while "
                    "this clock is over a minute off theirs this node proposes their time; "
                    "status changes signed by this clock (and credentials, if it is behind) "
                    f"are refused once it is {MAX_BACKDATE} s off the chain's time")
    if len(off) < 2:
        [(a, d)] = odd.items()
        return (f"the clock of the node of {a} and this machine's differ by {abs(d)} s (that "
                f"node's is {'ahead' if d > 0 else 'behind'}, by the times it publishes); with no "
                "third node's clock heard, which one is off is not known: both agencies check "
                "theirs (NTP); block times follow the clock of the node that proposes")
    return ("the clock of the node of " + ", ".join(
        f"{a} is {abs(d)} s {'ahead' if d > 0 else 'behind'}" for a, d in sorted(odd.items()))
        + " (by the times it publishes, against this machine's clock): that agency sets it "
        "right (NTP); block times follow the clock of the node that proposes")


def node_status(node: Node) -> tuple[_Status, str | None, dict[str, Any],
                                     dict[str, Any] | None]:
    """The node's status and problem (what /v1/health says, and /metrics counts), its head,
    and its cluster status (None: solo)."""
    head = node.head()
    cluster = node.cluster_status()
    # Block times follow the proposing node's clock and never go back: a chain ahead of this
    # machine's clock means a fast clock somewhere, and past MAX_BACKDATE everything signed by
    # correct clocks is refused (ADR 43).
    ahead = int(head["time"]) - node.now()
    skew = (f"the chain's time is {ahead} s ahead of this machine's clock: an agency node's "
            "clock is fast (or this one's slow); credentials and status changes signed with "
            f"correct clocks are refused once that passes {MAX_BACKDATE} s"
            if ahead > CLOCK_SLACK else None)
    if cluster is None:
        stopped = node.writer_failure()
        if stopped:  # it can take nothing more: a probe that reads the status stops routing
            return "halted", stopped, head, None
        problem = (node.signing_problem() or node.credit_problem() or node.issuer_problem()
                   or node.tls_problem() or skew)
        return ("degraded" if problem else "ok"), problem, head, None
    return (*cluster_health(node, cluster, head, skew), head, cluster)


@router.get("/v1/health", tags=["node"])
def health(node: NodeDep, response: Response) -> Health:
    """Liveness and position; on a multi-agency node also each peer's applied height and lag.
    A halted node answers 503, so a probe that reads only the status code stops routing to
    it; a degraded one (replication failing) answers 200 with the problem."""
    status, problem, head, cluster = node_status(node)
    if status == "halted":
        response.status_code = 503
    if cluster is None:
        return Health(status=status, agency=node.agency, network=node.network,
                      height=head["height"], log_size=head["log_size"],
                      halted=problem if status == "halted" else None, problem=problem)
    peers = {a: PeerOut(height=int(p.get("height", 0)), log_size=int(p.get("size", 0)),
                        revision=int(p.get("rev", 0)), lag=int(p.get("lag", 0)),
                        updated=int(p["time"]) if isinstance(p.get("time"), int) else None,
                        quiet=int(p["quiet"]) if isinstance(p.get("quiet"), int) else None)
             for a, p in cluster["peers"].items()}
    return Health(status=status, agency=node.agency, network=node.network,
                  height=head["height"], log_size=head["log_size"], ordering="etcd",
                  final_log_size=cluster["final_size"], peers=peers, halted=cluster["halted"],
                  fork_evidence_published=cluster.get("fork_evidence_published"),
                  problem=problem)


@router.get("/v1/cluster", tags=["node"], responses=_errors(404))
def cluster(node: NodeDep) -> ClusterOut:
    """Replication state: etcd revision applied, final size, counters, peers (etcd mode only)."""
    got = node.cluster_status()
    if got is None:
        raise NotFound("this node orders alone (solo); it has no cluster")
    return ClusterOut(**got)


@router.get("/v1/evidence", tags=["node"])
def evidence(node: NodeDep) -> list[dict[str, Any]]:
    """Equivocation evidence: checkpoints of the same size with another root, or with one root
    in another block (ADR 60), both signed."""
    return node.evidence()


@router.get("/v1/sync/blocks", tags=["chain"], response_class=MsgpackResponse,
            responses=_binary("application/msgpack"))
async def sync_blocks(request: Request, node: NodeDep,
                      from_: Annotated[int, Query(alias="from", ge=0, le=MAX_INT)],
                      count: Annotated[int, Query(ge=1, le=500)] = 100) -> Response:
    """Blocks for a peer catching up: msgpack list of [header bytes, [entry bytes...]]; fewer
    than ``count`` when they would pass 32 MiB. A rate-limit token per 50 blocks asked for,
    and two catch-up replies at a time per node (503 beyond)."""
    charge(request.scope, count // 50, f"a catch-up read of {count} blocks",
           "a token per 50 blocks")
    return MsgpackResponse(await run_in_threadpool(node.sync_blocks, from_, count))


@router.get("/v1/archive", tags=["chain"], response_class=StreamingResponse,
            responses=_binary("application/octet-stream"))
def archive(node: NodeDep) -> Response:
    """The whole chain up to the head as a portable archive (``ledger export``'s format),
    streamed: ``ledger audit --node`` and ``ledger export --node`` read it while the node runs.
    One at a time per node (503 while another is being sent)."""
    stream = node.archive()

    async def body() -> AsyncIterator[bytes]:
        try:
            async for chunk in iterate_in_threadpool(stream):
                yield chunk
        finally:  # the reader went (or has it all): its turn goes back now
            stream.close()

    return StreamingResponse(body(), media_type="application/octet-stream")


@router.get("/v1/sync/headers", tags=["chain"], response_class=MsgpackResponse,
            responses=_binary("application/msgpack"))
async def sync_headers(request: Request, node: NodeDep,
                       from_: Annotated[int, Query(alias="from", ge=0, le=MAX_INT)],
                       count: Annotated[int, Query(ge=1, le=SYNC_HEADERS)] = 1000) -> Response:
    """Block headers for a peer catching up: msgpack list of header bytes. A rate-limit token
    per 500 headers asked for, and two catch-up replies at a time per node (503 beyond)."""
    charge(request.scope, count // 500, f"a catch-up read of {count} headers",
           "a token per 500 headers")
    return MsgpackResponse(await run_in_threadpool(node.sync_headers, from_, count))


@router.get("/metrics", tags=["node"], response_class=PlainTextResponse,
            responses=_binary("text/plain"))
def metrics(request: Request, node: NodeDep) -> Response:
    m = request.app.state.metrics
    head = node.head()
    m.blocks.set(head["height"] + 1)
    m.txs.set(head["log_size"])
    status, _, _, cluster = node_status(node)
    m.halted.set(1 if status == "halted" else 0)  # a fork, or (solo) a block it could not write
    m.degraded.set(1 if status == "degraded" else 0)
    if cluster is not None:
        m.final.set(cluster["final_size"])
        m.equivocations.set(cluster["counters"].get("equivocations", 0))
        m.evidence.set(cluster.get("evidence_held", 0))
        m.forged.set(cluster["counters"].get("cosigs_forged", 0))
        lag = {a: p.get("lag", 0) for a, p in cluster["peers"].items()}
        # a current agency whose node never published a position has no height (no lag) but
        # is quiet all the same: the alert on its quiet series must fire
        quiet = {**(cluster.get("quiet_peers") or {}),
                 **{a: p.get("quiet", 0) for a, p in cluster["peers"].items()}}
        for gone in m.peers_labelled - set(lag):  # a removed agency
            m.peer_lag.remove(gone)
        for gone in m.quiet_labelled - set(quiet):  # a removed agency, or one heard again
            m.peer_quiet.remove(gone)
        m.peers_labelled, m.quiet_labelled = set(lag), set(quiet)
        for peer, blocks in lag.items():
            m.peer_lag.labels(peer).set(blocks)
        for peer, seconds in quiet.items():
            m.peer_quiet.labels(peer).set(seconds)
    return Response(generate_latest(m.registry), media_type=CONTENT_TYPE_LATEST)


@router.get("/v1/head", tags=["chain"])
def head(node: NodeDep) -> BlockHeader:
    return BlockHeader(**node.head())


@router.get("/v1/blocks", tags=["chain"])
def blocks(node: NodeDep,
           limit: Annotated[int, Query(ge=1, le=100)] = 20,
           before: Annotated[int | None, Query(ge=0, le=MAX_INT, description=(
               "Only blocks below this height: the next page back is ?before=<the lowest "
               "height of this page>"))] = None) -> list[BlockHeader]:
    """The newest block headers, newest first (``limit`` of them, below ``before``)."""
    return [BlockHeader(**b) for b in node.recent_blocks(limit, before)]


@router.get("/v1/blocks/{height}", tags=["chain"])
def block(node: NodeDep, height: Annotated[int, Path(ge=0, le=MAX_INT)],
          offset: Annotated[int, Query(ge=0, le=MAX_INT, description=(
              "The first transaction to give (a block holds up to thousands)"))] = 0,
          limit: Annotated[int | None, Query(ge=0, le=100_000, description=(
              "How many transactions to give (default: all from offset)"))] = None
          ) -> BlockView:
    """A block's header and its transactions (all, or ``limit`` from ``offset``)."""
    got = node.block(height, offset, limit)
    return BlockView(header=BlockHeader(**got["header"]),
                     transactions=[TxView(**t) for t in got["transactions"]])


@router.get("/v1/tx/{txid}", tags=["chain"])
def tx(node: NodeDep, txid: Annotated[str, Path(pattern=HEX64)]) -> CommittedTx:
    return CommittedTx(**node.tx(bytes.fromhex(txid)))


@router.get("/v1/tx/{txid}/receipt", tags=["chain"], responses=_errors(409))
def receipt(node: NodeDep, txid: Annotated[str, Path(pattern=HEX64)]) -> ReceiptOut:
    """The receipt of a committed transaction. 404 while it is not committed; 409 with the
    reason if this node was given it (``POST /v1/tx`` answered 202) and refused it since (this
    node remembers its last 10,000 such submissions)."""
    got = node.receipt(bytes.fromhex(txid))
    if got is None:
        raise NotFound(f"transaction {txid} is not committed (yet)")
    return _receipt(got)


@router.get("/v1/log/entries/{index}", tags=["chain"], response_class=MsgpackResponse,
            responses=_binary("application/msgpack"))
def log_entry(node: NodeDep, index: Annotated[int, Path(ge=0, le=MAX_INT)]) -> Response:
    """The committed transaction at leaf ``index``: its canonical bytes (the Merkle leaf)."""
    return MsgpackResponse(node.entry(index))


@router.get("/v1/checkpoint", tags=["chain"], response_class=PlainTextResponse,
            responses=_binary("text/plain"))
def checkpoint(node: NodeDep) -> Response:
    """The latest checkpoint: a C2SP tlog-checkpoint signed note."""
    return PlainTextResponse(node.checkpoint())


@router.get("/v1/proofs/inclusion", tags=["proofs"])
def inclusion(node: NodeDep, index: Annotated[int, Query(ge=0, le=MAX_INT)],
              size: Annotated[int | None, Query(ge=1, le=MAX_INT)] = None) -> InclusionProof:
    have = _log_size(node)
    size = have if size is None else size
    if size > have:
        raise NotFound(f"tree size {size} is beyond the log's {have}")
    if index >= size:
        raise NotFound(f"no leaf {index} in the tree of size {size}")
    proof = node.inclusion(index, size)
    return InclusionProof(index=index, size=size, root=_b64(node.store.root_at(size)),
                          proof=[_b64(h) for h in proof])


@router.get("/v1/proofs/consistency", tags=["proofs"])
def consistency(node: NodeDep, old: Annotated[int, Query(ge=1, le=MAX_INT)],
                new: Annotated[int | None, Query(ge=1, le=MAX_INT)] = None) -> ConsistencyProof:
    have = _log_size(node)
    new = have if new is None else new
    if new > have:
        raise NotFound(f"tree size {new} is beyond the log's {have}")
    if old > new:
        raise BadRequest(f"old size {old} is greater than new size {new}")
    proof = node.consistency(old, new)
    return ConsistencyProof(old=old, new=new, old_root=_b64(node.store.root_at(old)),
                            new_root=_b64(node.store.root_at(new)),
                            proof=[_b64(h) for h in proof])


# -- registry ------------------------------------------------------------------------------------

@router.get("/v1/registry", tags=["registry"])
def registry(node: NodeDep) -> RegistryOut:
    """The network, its governance quorum, the last governance sequence number (a proposal takes
    the next one) and the height this registry is as of."""
    return RegistryOut(**node.registry_summary())


@router.get("/v1/registry/agencies", tags=["registry"])
def agencies(node: NodeDep) -> list[AgencyOut]:
    return [AgencyOut(**a) for a in node.agencies()]


@router.get("/v1/registry/keys", tags=["registry"])
def keys(node: NodeDep) -> list[KeyOut]:
    registry_keys = node.keys()
    return [KeyOut(**k) for k in registry_keys]


@router.get("/v1/registry/grants", tags=["registry"])
def grants(node: NodeDep, at: Annotated[int | None, Query(ge=0, le=MAX_INT)] = None
           ) -> dict[str, list[str]]:
    """Agency → credential types it may issue at time ``at`` (default: now)."""
    return node.grants(at)


@router.get("/v1/registry/types", tags=["registry"])
def types(node: NodeDep) -> dict[str, dict[str, Any]]:
    return node.types()


@router.get("/v1/status-lists/{issuer}/{kind}", tags=["status"],
            response_class=StatusListTokenResponse,
            responses=_binary("application/statuslist+jwt"))
def status_list(request: Request, node: NodeDep, issuer: Annotated[str, Path(pattern=NAME)],
                kind: Annotated[str, Path(pattern=NAME)]) -> Response:
    """The current Status List Token of ``issuer``'s credentials of type ``kind`` (its first
    list: ``/v1/status-lists/{issuer}/{kind}/{number}`` serves the next ones). The same
    token is served for up to a minute while the list does not change, with an ``ETag``
    (``If-None-Match`` gets 304) and ``Cache-Control: max-age=60`` (the token's ``ttl`` is
    300 s)."""
    return _status_list_token(request, node.status_list_token(issuer, kind))


@router.get("/v1/status-lists/{issuer}/{kind}/{number}", tags=["status"],
            response_class=StatusListTokenResponse,
            responses=_binary("application/statuslist+jwt"))
def numbered_status_list(request: Request, node: NodeDep,
                         issuer: Annotated[str, Path(pattern=NAME)],
                         kind: Annotated[str, Path(pattern=NAME)],
                         number: Annotated[int, Path(ge=0, lt=STATUS_LISTS)]) -> Response:
    """Status list ``number`` of ``issuer``'s credentials of type ``kind``: an issuer's
    credentials of one type fill lists of 1,048,576 entries one after the other; a
    credential's ``status.status_list.uri`` ends in ``:{number}`` past the first (0)."""
    return _status_list_token(request, node.status_list_token(issuer, kind, number))


def _status_list_token(request: Request, token: str) -> Response:
    headers = {"ETag": '"' + hashlib.sha256(token.encode()).hexdigest()[:32] + '"',
               "Cache-Control": "public, max-age=60"}
    if _none_match(request.headers.get("if-none-match"), headers["ETag"]):
        return Response(status_code=304, headers=headers)
    return StatusListTokenResponse(token, headers=headers)


def _none_match(header: str | None, etag: str) -> bool:
    """Whether an ``If-None-Match`` header matches ``etag`` (RFC 9110 §13.1.2): a list of
    entity tags or ``*``, compared weakly (a proxy that compresses a reply, nginx's gzip for
    one, hands its clients the tag as ``W/"…"``)."""
    if header is None:
        return False
    tags = [t.strip() for t in header.split(",")]
    return "*" in tags or etag in (t.removeprefix("W/") for t in tags)


SNAPSHOT_AGENCIES = "Snapshot-Agencies"
"""The header of a snapshot part naming the agencies whose lists it signs (comma-separated):
an agency named there with no list has issued nothing."""
SNAPSHOT_TOKENS = 10
"""Rate-limit tokens a snapshot part takes: it signs every list of the agency (one Ed25519
signature and a compression of each)."""


@router.get("/v1/snapshot", tags=["status"], response_class=MsgpackResponse,
            responses=_binary("application/msgpack"))
def snapshot(request: Request, node: NodeDep) -> Response:
    """This node's part of a verifier's offline snapshot (canonical msgpack, as ``ledger
    snapshot`` writes): the registry, the latest final checkpoint, and the Status List Tokens
    of the agencies whose node keys it holds (on a network of several, its own agency's).
    ``ledger snapshot --node URL --node URL …`` merges the parts of every agency's node."""
    charge(request.scope, SNAPSHOT_TOKENS - 1, "a snapshot",
           f"it signs every list of the agency: {SNAPSHOT_TOKENS} requests' worth")
    return MsgpackResponse(node.snapshot(), headers={
        SNAPSHOT_AGENCIES: ",".join(sorted(node.node_keys))})


# -- writing -------------------------------------------------------------------------------------

@router.post("/v1/tx", tags=["write"], status_code=200,
             responses={202: {"model": Pending}, **_errors(409, 422, 503)},
             openapi_extra={"requestBody": {"required": True, "content": {
                 "application/msgpack": {"schema": {"type": "string", "format": "binary"}}}}})
async def submit(request: Request, node: NodeDep,
                 wait: Annotated[float, Query(ge=0, le=30)] = 10.0) -> Response:
    """Submit a signed transaction (canonical msgpack). Idempotent: a repeat gets the same
    receipt. 200 with the receipt once committed; 202 if not committed within ``wait`` s."""
    raw = await request.body()
    unverified = Tx.from_bytes(raw)  # DecodeError → 400 before anything is queued
    free_text = free_text_reason(unverified)
    if free_text is not None:
        raise BadRequest(f"a {unverified.type} transaction's reason: {free_text}")
    unclear = rule_text_problem(unverified)
    if unclear is not None:
        raise BadRequest(f"the rule would never match a claim: {unclear}")
    costly = rule_cost_of(unverified)
    if costly is not None:
        raise BadRequest(f"the rule would cost too much at every application: {costly}")
    got = await run_in_threadpool(node.submit, raw, wait)
    if got is None:
        txid = unverified.txid.hex()
        body = Pending(txid=txid, status="pending", receipt=f"/v1/tx/{txid}/receipt")
        return JSONResponse(body.model_dump(), status_code=202)
    return JSONResponse(_receipt(got).model_dump())


@router.post("/v1/tx/batch", tags=["write"], response_model=list[BatchItem],
             responses=_errors(400, 413, 429))
async def submit_batch(request: Request, node: NodeDep,
                       wait: Annotated[float, Query(ge=0, le=30)] = 10.0) -> Response:
    """Submit many signed transactions at once: the body is canonical msgpack, a list of
    transaction envelopes (bytes). Each gets its own outcome, in order; a malformed one does not
    stop the others. Idempotent like ``POST /v1/tx``. ``rejected`` is a refusal; ``pending``
    is not committed yet (the wait ended first; etcd did not confirm the put, code
    ``unconfirmed``: it may commit yet; or etcd's NOSPACE alarm refused it, code ``nospace``:
    it was not ordered), to be polled or sent again with the same bytes. An item the node knows
    it handed nothing of on (as ``POST /v1/tx``'s ``"taken": false``) says ``"taken": false``;
    absent where it cannot know, never true.
    Beyond its own rate-limit token, a batch takes one for every 64 transactions, before any
    is checked (429 without them)."""
    raw = await request.body()
    # bounded by the node's max_body_bytes already (4 MiB on a cluster's nodes): 4096
    # transactions do not fit in the codec's default 1 MiB
    items = codec.decode(raw, max_size=max(codec.MAX_SIZE,
                                           request.app.state.settings.max_body_bytes),
                         what="transaction batch")
    if not isinstance(items, list) or not all(type(i) is bytes for i in items) or not items:
        raise BadRequest("the body must be a non-empty msgpack list of transaction envelopes")
    if len(items) > 4096:
        raise BadRequest(f"{len(items)} transactions in one request; at most 4096")
    # one signature check per item: a large batch pays for them before they are made (ADR 47)
    charge(request.scope, len(items) // BATCH_ITEMS_PER_TOKEN,
           f"a batch of {len(items)} transactions",
           f"a token per {BATCH_ITEMS_PER_TOKEN} transactions: send smaller batches")
    out: list[dict[str, Any] | None] = [None] * len(items)
    good: list[tuple[int, Tx]] = []
    for i, item in enumerate(items):
        try:
            tx = Tx.from_bytes(item)
        except DecodeError as e:
            out[i] = _batch_item(None, "malformed", error=str(e))
            continue
        free_text = free_text_reason(tx)
        unclear = rule_text_problem(tx)
        costly = rule_cost_of(tx)
        if free_text is not None:
            out[i] = _batch_item(tx.txid.hex(), "rejected", code="reason_not_a_code",
                                 error=f"a {tx.type} transaction's reason: {free_text}")
        elif unclear is not None:
            out[i] = _batch_item(tx.txid.hex(), "rejected", code="rule_text",
                                 error=f"the rule would never match a claim: {unclear}")
        elif costly is not None:
            out[i] = _batch_item(tx.txid.hex(), "rejected", code="rule_cost",
                                 error=f"the rule would cost too much at every application: "
                                       f"{costly}")
        else:
            good.append((i, tx))
    got = await run_in_threadpool(node.submit_many, [t for _, t in good], wait)
    for (i, t), r in zip(good, got, strict=True):
        if r is None:
            out[i] = _batch_item(t.txid.hex(), "pending")
        elif isinstance(r, Receipt):
            out[i] = _batch_item(t.txid.hex(), "committed", r.index, r.height, r.duplicate)
        elif isinstance(r, Unconfirmed):
            # Not refused: etcd did not confirm the put of its batch, which it may have taken
            # (an answer lost); then it commits yet. Pending, as when the wait ends first:
            # send the same bytes again. POST /v1/tx answers it 503.
            out[i] = _batch_item(t.txid.hex(), "pending", error=str(r), code="unconfirmed")
        elif isinstance(r, NoSpace):
            # Not refused either: etcd's NOSPACE alarm went off at its batch's put, so it was
            # not ordered; the same bytes are taken once the alarm clears (the next request
            # meanwhile is answered 503, as POST /v1/tx answers this one).
            out[i] = _batch_item(t.txid.hex(), "pending", error=str(r), code="nospace")
        else:
            out[i] = _batch_item(t.txid.hex(), "rejected", error=str(r),
                                 code=getattr(r, "code", None))
        item = out[i]
        if item is not None and isinstance(r, LedgerError) and r.taken is False:
            # the raiser knows it handed nothing of this item on (ADR 84), as POST /v1/tx says
            item["taken"] = False
    # Thousands of items of our own values: JSON straight from dicts in BatchItem's field
    # order, ~4x cheaper than building and serializing the models (ADR 29).
    return Response(json.dumps(out, separators=(",", ":")).encode(),
                    media_type="application/json")


def _batch_item(txid: str | None, status: str, index: int | None = None,
                height: int | None = None, duplicate: bool | None = None,
                error: str | None = None, code: str | None = None) -> dict[str, Any]:
    """One BatchItem as a plain dict (keys in the model's field order; ``taken`` is added only
    where it is false)."""
    return {"txid": txid, "status": status, "index": index, "height": height,
            "duplicate": duplicate, "error": error, "code": code}


@router.post("/v1/credentials", tags=["write"], responses=_errors(401, 403, 409, 422))
def issue(node: NodeDep, _: Operator, body: IssueIn) -> Issued:
    """Issue a credential of this node's agency to the holder key (operator only)."""
    if body.type in RESERVED_TYPES:
        raise BadRequest(f"{body.type!r} credentials record a decision: the approvals service "
                         "issues them (POST /v1/services/{service}/apply), never by hand")
    bundle, got = node.issue(body.type, body.claims, body.holder_jwk, body.valid_days)
    return Issued(credential_id=_credential_id(bundle), bundle=_b64url(bundle.to_bytes()),
                  receipt=_receipt(got))


def _credential_id(bundle: Bundle) -> str:
    cid = Tx.from_bytes(bundle.anchor).body["credential_id"]
    return cid.hex() if isinstance(cid, bytes) else str(cid)


@router.post("/v1/credentials/{credential_id}/status", tags=["write"],
             responses=_errors(401, 403, 409, 422))
def set_status(node: NodeDep, _: Operator,
               credential_id: Annotated[str, Path(pattern=HEX64)], body: StatusIn) -> ReceiptOut:
    """Revoke, suspend or reinstate a credential this agency issued (operator only)."""
    return _receipt(node.set_status(bytes.fromhex(credential_id), body.status, body.reason))


# -- verifying -----------------------------------------------------------------------------------

QR_TOKENS = 10
"""Rate-limit tokens a new presentation request takes: its QR code costs ~11 ms of CPU (ADR 47)."""


def charge_qr(request: Request, what: str) -> None:
    """Take the tokens of drawing a request's QR code (:data:`QR_TOKENS`, the request's own
    one included); :class:`~node.ratelimit.RateLimited` without them."""
    charge(request.scope, QR_TOKENS - 1, what,
           f"its QR code costs as much CPU as {QR_TOKENS} requests")


HEAD_AS_GET: Final = "credledger.head_as_get"
"""The scope key the app sets on a HEAD it passes on to a route as a GET (``node.app``)."""

QR_NAME: Final = "QR code of this presentation request (the same as the request text)"


@functools.lru_cache(maxsize=256)
def qr_svg(text: str, dark: str = "#000", light: str = "#fff") -> str:
    """The QR code of ``text`` as inline SVG, remembered: a page shown again (a retry after a
    bad upload) does not draw it again. segno.DataOverflowError if ``text`` does not fit."""
    svg = segno.make(text, error="m").svg_inline(scale=4, dark=dark, light=light,
                                                  title=QR_NAME)
    # role=img with a name: read as one image (WCAG 1.1.1), not an unnamed graphic
    return svg.replace("<svg ", f'<svg role="img" aria-label="{QR_NAME}" ', 1)

@router.post("/v1/presentation-requests", tags=["verify"], responses=_errors(429))
def new_request(request: Request, node: NodeDep, settings: SettingsDep,
                body: RequestIn) -> RequestOut:
    """Open a presentation request (nonce valid 10 minutes) and its QR code. With a trust list
    (ADR 39), a type the registry does not know is one from outside the network. Drawing the
    QR code costs ~10 plain requests' CPU: it takes that many rate-limit tokens."""
    charge_qr(request, "a presentation request with its QR code")
    pending = node.new_request(body.type, body.claims, settings.audience,
                               foreign=trust_of(request.app) is not None)
    text = json.dumps(pending.request.to_json(), separators=(",", ":"), sort_keys=True)
    try:
        qr: str | None = qr_svg(text)
    except segno.DataOverflowError:  # the request is open all the same: it goes as text
        qr = None
    return RequestOut(**pending.to_json(), qr_svg=qr)


_log = logging.getLogger("node.http")


def trust_of(app: Any) -> TrustList | None:
    """The app's trust list for credentials from outside the network (None: it has none)."""
    trust: TrustList | None = getattr(app.state, "trust", None)
    return trust


def verify_foreign_for(app: Any, node: Node, presentation: str, nonce: str) -> Report:
    """A foreign presentation checked for the page or the API: the app's trust list, and the
    status tokens in its folder as they are now (a file left out is logged by name)."""
    trust = trust_of(app)
    if trust is None:
        raise BadRequest("this node verifies credentials of the network only: a credential "
                         "from an issuer outside it needs a trust list in the node's settings "
                         "(trust_list; ADR 39)")
    node.request(nonce)  # NotFound before the folder is read: any nonce would cost that (ADR 57)
    folder = app.state.settings.status_tokens
    tokens, skipped = ({}, []) if folder is None else read_status_tokens(folder)
    for line in skipped:
        _log.warning("status token left out", extra={"file": line.split(":", 1)[0]})
    return node.verify_foreign(presentation, nonce, trust, tokens)


@router.post("/v1/verify", tags=["verify"])
def verify(request: Request, node: NodeDep, body: VerifyIn) -> ReportOut:
    """Verify a presentation envelope (or, with ``sd_jwt``, a credential from an issuer
    outside the network) against the open request ``nonce`` (consumes it)."""
    if body.sd_jwt is not None:
        return ReportOut(**verify_foreign_for(request.app, node, body.sd_jwt,
                                              body.nonce).to_json())
    envelope = _from_b64url(body.envelope or "", "envelope")
    return ReportOut(**node.verify(envelope, body.nonce).to_json())
