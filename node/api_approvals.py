"""HTTP routes for approval rules, applications, decisions and own credit records.

Rules and the opening of applications are public; deciding is too (the presentations are the
applicant's authority). Listing and explaining decisions show the agency's own records (claim
values) and need the operator token. Nothing lists credit subjects.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from ledger.errors import LedgerError
from node.api import (
    HEX64,
    MAX_INT,
    NAME,
    NodeDep,
    OneReadingRoute,
    Operator,
    SettingsDep,
    _b64url,
    _errors,
    _from_b64url,
)
from node.approvals import Approvals
from node.ratelimit import charge

__all__ = ["router"]

router = APIRouter(responses=_errors(400, 404, 413, 429, 503), route_class=OneReadingRoute)


def _approvals(request: Request, node: NodeDep) -> Approvals:
    got: Approvals | None = getattr(request.app.state, "approvals", None)
    if got is None or got.node is not node:
        got = Approvals(node)
        request.app.state.approvals = got
    # decisions committed before their record was filed (a stop, a full disk, a submission
    # that timed out): filed, or removed a day on, at the first request and hourly after
    # (not only at a start: a node runs for months)
    with contextlib.suppress(OSError, LedgerError):
        got.file_pending_hourly()
    return got


ApprovalsDep = Annotated[Approvals, Depends(_approvals)]


class Answer(BaseModel):
    model_config = ConfigDict(extra="forbid")
    nonce: str = Field(min_length=1, max_length=128)
    envelope: str = Field(min_length=1, max_length=64 * 1024)


class ApplyIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    holder_jwk: dict[str, str]
    presentations: list[Answer] = Field(min_length=1, max_length=8)


class CreditRequestIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: str = Field(max_length=64)


class CreditRecordIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    nonce: str = Field(min_length=1, max_length=128)
    envelope: str = Field(min_length=1, max_length=64 * 1024)


class CreditEventIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    subject: str = Field(min_length=1, max_length=256, description=(
        "The subject's identifier, as its identity credential carries it (a person-id's "
        "number, a business's registration number). The ledger keeps a keyed pseudonym only."))
    reason: str = Field(min_length=1, max_length=64, description=(
        "A reason code: lowercase letters, digits, '.', '_' or '-'. Public on the ledger for "
        "good: never a name or other personal detail."))
    category: str | None = Field(default=None, max_length=64, description=(
        "A category of the credit policy (not with withdraws)."))
    points: int | None = Field(default=None, ge=-1_000_000, le=1_000_000)
    # bounded as the other routes' integers: past 64 bits the transaction could not even be
    # encoded (a 500); the ledger's own bound on times is said in words (400)
    date: int | None = Field(default=None, ge=0, le=MAX_INT,
                             description="When it happened (default now).")
    expiry: int | None = Field(default=None, ge=0, le=MAX_INT,
                               description="When it stops counting.")
    valid_days: int | None = Field(default=None, ge=1, le=100 * 366, description=(
        "Instead of expiry: days from the event's date until it stops counting."))
    withdraws: str | None = Field(default=None, pattern=HEX64, description=(
        "Withdraw this agency's earlier event of the subject (its transaction id) instead."))


Service = Annotated[str, Path(pattern=NAME)]


@router.get("/v1/services", tags=["approvals"])
def services(a: ApprovalsDep) -> list[dict[str, Any]]:
    """Every registered approval rule in force (header, rule text, version history)."""
    return a.services()


@router.get("/v1/services/{service}", tags=["approvals"])
def service(a: ApprovalsDep, service: Service) -> dict[str, Any]:
    return a.service(service)


OPEN_TOKENS = 3
"""Rate-limit tokens each presentation request opened for an application or a credit record
takes (the desk's take :data:`~node.api.QR_TOKENS`). An open request holds a place in a table
of ``MAX_OPEN_REQUESTS`` whose oldest goes when it is full: at one token a request, one client
at the default rate (6,000 a minute) filled the 50,000 places in about 8 minutes, less than a
request's 10, and ended every official's and citizen's request before its answer came (helper
round 22H); at three it holds 20,000 at most."""


def _pay_for(request: Request, what: str) -> Callable[[int], None]:
    def pay(opened: int) -> None:
        charge(request.scope, OPEN_TOKENS * opened - 1, what,
               f"each request it opens takes {OPEN_TOKENS} tokens")
    return pay


@router.post("/v1/services/{service}/applications", tags=["approvals"])
def open_application(request: Request, a: ApprovalsDep, settings: SettingsDep,
                     service: Service) -> dict[str, Any]:
    """Open an application: one presentation request per credential type the rule needs (each
    takes OPEN_TOKENS rate-limit tokens)."""
    pending = a.open_application(service, settings.audience,
                                 pay=_pay_for(request, f"an application for {service!r}"))
    return {"service": service, "requests": [p.to_json() for p in pending]}


@router.post("/v1/services/{service}/apply", tags=["approvals"],
             responses=_errors(409, 422, 503))
def apply(a: ApprovalsDep, service: Service, body: ApplyIn,
          rule: Annotated[str | None, Query(pattern="^[0-9a-fA-F]{64}$", description=(
              "The version (hash) of the rule the applicant was shown: if another is in force "
              "now, nothing is decided (409 `stale_rule`). Without it, the version in force "
              "decides."))] = None) -> dict[str, Any]:
    """Verify the answers, decide by the rule in force, commit the approval and return the
    approval credential's bundle (base64url). A refusal of the credential's issue after the
    decision committed is a 503 with code ``decided_not_issued``: the decision is on the
    ledger, and its credential is collected (``/collect``); an application sent again is
    decided again."""
    answers = [(p.nonce, _from_b64url(p.envelope, "envelope")) for p in body.presentations]
    got = a.apply(service, answers, dict(body.holder_jwk),
                  None if rule is None else bytes.fromhex(rule))
    return {**got.to_json(), "bundle": _b64url(got.bundle.to_bytes())}


class CollectIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    holder_jwk: dict[str, str]
    proof: str = Field(min_length=1, max_length=4096, description=(
        "A compact JWS of typ 'approval-collect+jwt' signed by the holder key, over "
        "{nonce, aud, service, iat}: the nonce of POST /v1/services/{service}/collect/"
        "challenge, aud this node's audience."))


@router.post("/v1/services/{service}/collect/challenge", tags=["approvals"])
def collect_challenge(request: Request, a: ApprovalsDep, settings: SettingsDep,
                      service: Service) -> dict[str, Any]:
    """A single-use nonce for collecting the approval credential of a decision on SERVICE
    (it takes OPEN_TOKENS rate-limit tokens)."""
    return a.challenge(service, settings.audience,
                       pay=_pay_for(request, f"a collect challenge for {service!r}"))


@router.post("/v1/services/{service}/collect", tags=["approvals"], responses=_errors(409, 422))
def collect(a: ApprovalsDep, settings: SettingsDep, service: Service,
            body: CollectIn) -> dict[str, Any]:
    """The approval credential of this node's newest committed decision on SERVICE of an
    application bound to the holder key, given after proof of that key (a wallet whose first
    answer was lost): the decision's one credential (the same id each time; issued if none
    was yet), the decision not made again."""
    got = a.collect(service, dict(body.holder_jwk), body.proof, settings.audience)
    return {**got.to_json(), "bundle": _b64url(got.bundle.to_bytes())}


@router.get("/v1/approvals", tags=["approvals"], responses=_errors(401, 403))
def approvals(a: ApprovalsDep, _: Operator) -> list[dict[str, Any]]:
    """Decisions this node made, oldest first (operator only)."""
    return a.list()


@router.get("/v1/approvals/{txid}/explain", tags=["approvals"], responses=_errors(401, 403))
def explain(a: ApprovalsDep, _: Operator, txid: Annotated[str, Path(pattern=HEX64)],
            response: Response) -> dict[str, Any]:
    """Which inputs, which expression, which reason (holds claim values: operator only, and
    kept by no cache)."""
    response.headers["cache-control"] = "no-store"
    return a.explain(txid)


@router.post("/v1/credit/requests", tags=["credit"])
def credit_request(request: Request, a: ApprovalsDep, settings: SettingsDep,
                   body: CreditRequestIn) -> dict[str, Any]:
    """Open an identity presentation request for reading one's own credit record (it takes
    OPEN_TOKENS rate-limit tokens)."""
    return a.credit_request(body.type, settings.audience,
                            pay=_pay_for(request, "a credit record's request")).to_json()


@router.post("/v1/credit/record", tags=["credit"])
def credit_record(a: ApprovalsDep, body: CreditRecordIn) -> dict[str, Any]:
    """The proven subject's own credit events and score (nobody can list subjects)."""
    return a.credit_record(body.nonce, _from_b64url(body.envelope, "envelope"))


@router.post("/v1/credit/events", tags=["credit"], responses=_errors(401, 403, 409))
def credit_event(a: ApprovalsDep, _: Operator, body: CreditEventIn) -> dict[str, Any]:
    """Record a credit event of this agency about a subject, or withdraw one (operator only):
    signed with the agency's issuing key, the subject kept as a keyed pseudonym."""
    receipt = a.record_credit(
        body.subject, reason=body.reason, category=body.category, points=body.points,
        date=body.date, expiry=body.expiry, valid_days=body.valid_days,
        withdraws=None if body.withdraws is None else bytes.fromhex(body.withdraws))
    return {"event": receipt.txid.hex(), "txid": receipt.txid.hex(), "index": receipt.index,
            "height": receipt.height, "duplicate": receipt.duplicate}
