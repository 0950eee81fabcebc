"""The node's web pages: the verifying official's desk (``/verify``) and the chain explorer (``/``).

Server-rendered HTML (Jinja2), no JavaScript framework, nothing fetched from elsewhere. The pages
read the node as ``request.app.state.node`` (see :data:`NodeDep`). Every bad input of the
verifier (a garbage presentation, an unreadable image, an unknown or expired nonce) is answered
with a message on the page and HTTP 400, never a 500.

The explorer shows anchors and decisions only: transaction types, signer key ids, credential ids,
status changes, governance actions. The ledger holds no personal data and neither do these pages.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import datetime as dt
import functools
import inspect
import json
import re
import secrets
import struct
import threading
import time as _time
import zlib
from collections import OrderedDict
from collections.abc import AsyncIterator, Iterator, Mapping
from pathlib import Path
from typing import Annotated, Any, NamedTuple

import anyio
import anyio.to_thread
import jinja2
import markupsafe
import plyvel
import segno
import zxingcpp
from fastapi import APIRouter, Depends, FastAPI, File, Form, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from ledger import sdjwt
from ledger.display import printable
from ledger.errors import DecodeError, LedgerError, StoreError
from ledger.presentation import MAX_ENVELOPE, Envelope, Report, origin_of
from ledger.timetext import local_text
from node.api import HEAD_AS_GET, charge_qr, qr_svg, trust_of, validation_error, verify_foreign_for
from node.api import http_error as api_http_error
from node.ratelimit import RateLimited, client_key
from node.service import REQUEST_TTL, Node, NotFound, PendingRequest

__all__ = ["NodeDep", "router"]

HERE = Path(__file__).parent
MAX_UPLOAD = 4 * 1024 * 1024
"""Largest QR image accepted (bytes of PNG)."""
MAX_PIXELS = 2_000_000
"""Largest decoded QR image (pixels); the PNG reader is pure Python."""
MAX_DECODED = 5 * 1024 * 1024 // 2
"""Largest decoded QR image (bytes of filtered rows: 800x800 of 8-bit RGBA; the wallet's own
QR PNG is a few hundred KiB of grey). Decoding takes about 0.3 s per MiB here, so a small
crafted PNG must not buy seconds of CPU: at most ~0.8 s (ADR 47; 6 MiB, ~2 s, before)."""
DECODERS = 2
"""QR images decoded at once per app; :data:`DECODES_WAITING` more may wait, one per client."""
DECODES_WAITING = 2


def get_node(request: Request) -> Node:
    node: Node = request.app.state.node
    return node


NodeDep = Annotated[Node, Depends(get_node)]

router = APIRouter(tags=["pages"], include_in_schema=False)


def _shown(value: Any) -> Any:
    """Every value a page prints, before it is escaped as HTML: format and invisible
    characters as ``\\uNNNN`` (:func:`printable`), so a type title, an agency name or a
    claim name of a registry cannot reorder or hide what the desk reads ("Senior card
    \\u202eDEIFIREV" showed as "Senior card VERIFIED"). Line breaks and tabs stay (a pasted
    presentation shown again), and so does the ideographic space of Chinese text; markup the
    node made itself (the QR code) and what a form gets back as typed (``| e``) are left
    alone."""
    if not isinstance(value, str) or isinstance(value, markupsafe.Markup) \
            or printable(value) == value:
        return value
    return "".join(ch if ch in "\n\r\t\u3000" else printable(ch) for ch in value)


def _bdi(value: Any) -> markupsafe.Markup:
    """An outside string (a type, a claim's name or value, an issuer's name) on its own in
    ``<bdi>``: right-to-left text in it (Hebrew, Arabic) is ordered inside it alone, and does
    not take the desk's words or numbers beside it into its run (`` | bdi`` in a template)."""
    return markupsafe.Markup("<bdi>") + markupsafe.escape(_shown(value)) + \
        markupsafe.Markup("</bdi>")


_QUOTED = re.compile(r"(?<!\w)'(?:[^'\\\n]|\\.)*'(?!\w)"
                     r"|(?<!\w)\"(?:[^\"\\\n]|\\.)*\"(?!\w)")
"""A quoted string in a check's detail: outside text the checks quote (``type 'x'``, the trust
list's name for an issuer), as Python's ``repr`` quotes it."""


def _isolated(detail: str) -> markupsafe.Markup:
    """A check's detail with each quoted outside string in ``<bdi>`` (:func:`_bdi`): in "type
    'תעודה', 1 claim disclosed" the count was drawn before the type's name, taken into its
    right-to-left run. The text itself is unchanged."""
    out, at = markupsafe.Markup(""), 0
    for m in _QUOTED.finditer(detail):
        out += markupsafe.escape(_shown(detail[at:m.start()])) + _bdi(m.group())
        at = m.end()
    return out + markupsafe.escape(_shown(detail[at:]))


@functools.cache
def _templates() -> Jinja2Templates:
    t = Jinja2Templates(directory=HERE / "templates")
    t.env.finalize = _shown
    t.env.filters["bdi"] = _bdi
    t.env.filters["isolated"] = _isolated
    t.env.filters["when"] = _when_here
    t.env.filters["short"] = _short
    t.env.globals["url_for"] = _path_for
    return t


@jinja2.pass_context
def _path_for(context: Any, name: str, /, **params: Any) -> str:
    """A link as a path on this node (``/verify``), not an absolute URL: Starlette's ``url_for``
    builds one from the request's Host header, which the client (or a proxy) chooses, so a
    forged header would send the official's form and links elsewhere (or poison a shared cache)."""
    request: Request = context["request"]
    return str(request.scope.get("root_path", "")) + str(request.app.url_path_for(name, **params))


def _when(ts: Any, zone: dt.tzinfo = dt.UTC) -> str:
    """A time as the clock where the desk is shows it: in the node's time zone (ADR 58)."""
    if not isinstance(ts, int):
        return "—"
    return local_text(ts, zone)


@jinja2.pass_context
def _when_here(context: Any, ts: Any) -> str:
    """``when`` in a template: the page's ``zone``, else its app's node's, else UTC."""
    zone = context.get("zone")
    if zone is None:
        node = getattr(context["request"].app.state, "node", None)
        zone = dt.UTC if node is None else node.zone
    return _when(ts, zone)


def _short(text: Any, n: int = 12) -> str:
    s = str(text)
    return s if len(s) <= n else s[:n] + "…"


def _page(request: Request, name: str, context: dict[str, Any],
          status_code: int = 200) -> HTMLResponse:
    return _templates().TemplateResponse(request, name, context, status_code=status_code)


def _decoders(request: Request) -> anyio.CapacityLimiter:
    """At most :data:`DECODERS` QR images decoded at once per app (made in its event loop, on
    first use)."""
    limiter: anyio.CapacityLimiter | None = getattr(request.app.state, "qr_decoders", None)
    if limiter is None:
        limiter = request.app.state.qr_decoders = anyio.CapacityLimiter(DECODERS)
    return limiter


class DecoderBusy(Exception):
    """No room to decode this image now (HTTP 503 page); the text can still be pasted."""


@contextlib.contextmanager
def _decode_turn(request: Request, limiter: anyio.CapacityLimiter) -> Iterator[None]:
    """One image at a time per client address, and a short queue: a client uploading crafted
    images cannot make the officials' uploads wait behind a growing line (ADR 47)."""
    busy: set[str] | None = getattr(request.app.state, "qr_clients", None)
    if busy is None:
        busy = request.app.state.qr_clients = set()
    who = client_key(request.client.host) if request.client else "unknown"  # as rate limits
    if who in busy:
        raise DecoderBusy("An image from this computer is still being read; wait for it.")
    if limiter.borrowed_tokens >= limiter.total_tokens and \
            limiter.statistics().tasks_waiting >= DECODES_WAITING:
        raise DecoderBusy("The verifier is reading other images right now; paste the "
                          "presentation's text, or upload the image again in a few seconds.")
    busy.add(who)
    try:
        yield
    finally:
        busy.discard(who)


class BadInput(Exception):
    """Input the official gave that cannot be checked; shown on the page with HTTP 400."""


# -- errors outside the API: pages, not JSON ---------------------------------------------------

_API_PREFIXES = ("/v1/", "/openapi.json", "/metrics", "/static/")


def for_a_person(request: Request) -> bool:
    """Whether the request is for a page a person reads, not for the API (``/v1``,
    ``/metrics``, FastAPI's own pages), whose errors stay JSON."""
    path = request.url.path
    return path != "/v1" and not path.startswith(_API_PREFIXES)


REFUSAL_PAGES = 64
"""Refusal pages an app keeps drawn (one per wording: a rate limit's seconds to wait): a
refusal costs a flood next to nothing, and drawing the page each time took ~0.6 ms."""


def _refusal_page(scope: Any, title: str, message: str, status: int,
                  headers: Mapping[str, str]) -> Response | None:
    """A refusal made before any route runs (the rate limit, a body that did not arrive in
    time) of a person's page: the desk's error page, as a route's own refusal shows it; None
    for the API, which keeps its JSON. Only the event loop's thread calls it (middleware)."""
    request = Request(scope)
    if not for_a_person(request):
        return None
    drawn: OrderedDict[tuple[str, str, str, int], bytes] | None = getattr(
        request.app.state, "refusal_pages", None)
    if drawn is None:
        drawn = request.app.state.refusal_pages = OrderedDict()
    key = (str(scope.get("root_path", "")), title, message, status)
    body = drawn.get(key)
    if body is None:
        body = bytes(_error_page(request, title, message, status).body)
        drawn[key] = body
        while len(drawn) > REFUSAL_PAGES:
            drawn.popitem(last=False)
    return HTMLResponse(body, status_code=status, headers=dict(headers))


def install_error_pages(app: FastAPI) -> None:
    """A person who mistypes an address, reloads a form's target or follows a stale link gets
    an HTML page; the API (``/v1``, ``/metrics``, FastAPI's own pages) keeps its JSON errors.
    So does one the rate limit refuses before any route runs (``app.state.refusal_page``)."""
    app.state.refusal_page = _refusal_page

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)  # registered for it only
        if not for_a_person(request):
            return await api_http_error(request, exc)
        title = {404: "Page not found", 405: "Not available here"}.get(
            exc.status_code, f"Error {exc.status_code}")
        message = ("There is no page at this address." if exc.status_code == 404 else
                   str(exc.detail))
        return _error_page(request, title, message, exc.status_code, exc.headers)

    async def bad_parameters(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)  # registered for it only
        if not for_a_person(request):
            return await validation_error(request, exc)
        where = ", ".join(str(e.get("loc", ["?"])[-1]) for e in exc.errors()[:5])
        return _error_page(request, "Not a valid address or form",
                           f"This page cannot use what it was given ({where}).", 400)

    # the app's JSON answers (and log lines) of a damaged store, as registered before these
    api_answers = {StoreError: app.exception_handlers.get(LedgerError),
                   plyvel.Error: app.exception_handlers.get(plyvel.Error)}

    async def store_unreadable(request: Request, exc: Exception) -> Response:
        # This node's own records damaged (a stored checkpoint, a block header; LevelDB's
        # checksums): the explorer says so on a page, where the API answers its JSON 503.
        # LevelDB's words name the data folder's files: the app's handler logs them, and a
        # person reads what an API client reads.
        api = api_answers[StoreError if isinstance(exc, StoreError) else plyvel.Error]
        assert api is not None  # registered only then
        got = api(request, exc)
        answer: Response = await got if inspect.isawaitable(got) else got
        if not for_a_person(request):
            return answer
        detail = str(exc) if isinstance(exc, StoreError) else \
            json.loads(bytes(answer.body))["detail"]
        return _error_page(request, "This node cannot read its ledger", detail, 503)

    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(RequestValidationError, bad_parameters)
    for kind, api in api_answers.items():
        if api is not None:
            app.add_exception_handler(kind, store_unreadable)


def _error_page(request: Request, title: str, message: str, status: int,
                headers: Mapping[str, str] | None = None) -> HTMLResponse:
    node = getattr(request.app.state, "node", None)
    page = _page(request, "error.html", {"network": getattr(node, "network", "ledger"),
                                         "title": title, "message": message},
                 status_code=status)
    page.headers.update(headers or {})  # a 405's Allow (RFC 9110 §15.5.6)
    return page


# -- static -----------------------------------------------------------------------------------

@router.get("/static/pages.css")
def stylesheet() -> FileResponse:
    return FileResponse(HERE / "static" / "pages.css", media_type="text/css")


# -- the API's reference ----------------------------------------------------------------------

_OPERATIONS = ("get", "post", "put", "patch", "delete")


@router.get("/docs", response_class=HTMLResponse, include_in_schema=False, name="api_page")
def api_page(request: Request) -> HTMLResponse:
    """The JSON API's reference, read from its OpenAPI document, as a page of the node's own.

    FastAPI's Swagger UI and ReDoc load their scripts from a CDN into this origin, where the
    desk's cookie and verdicts live, and show nothing on a network without the internet
    (ADR 54). This page has no script, under the pages' strict CSP."""
    spec = request.app.openapi()
    operations = []
    for path, item in spec.get("paths", {}).items():
        for method in _OPERATIONS:
            op = item.get(method)
            if op is None:
                continue
            body = op.get("requestBody", {}).get("content", {})
            operations.append({
                "method": method.upper(), "path": path, "id": op.get("operationId", ""),
                "summary": op.get("summary", ""),
                # a docstring's paragraphs, its lines joined
                "description": [" ".join(par.split())
                                for par in op.get("description", "").split("\n\n")
                                if par.strip()],
                "parameters": [{"name": p.get("name", ""), "in": p.get("in", ""),
                                "required": bool(p.get("required")),
                                "type": _schema_name(p.get("schema", {})),
                                "description": p.get("description", "")}
                               for p in op.get("parameters", [])],
                "body": sorted(body),
                "responses": [(code, r.get("description", ""))
                              for code, r in sorted(op.get("responses", {}).items())]})
    node = getattr(request.app.state, "node", None)
    return _page(request, "api.html", {
        "network": getattr(node, "network", "ledger"), "title": spec["info"]["title"],
        "version": spec["info"]["version"], "summary": spec["info"].get("summary", ""),
        "operations": operations})


def _schema_name(schema: Mapping[str, Any]) -> str:
    """A parameter's type in a word: ``integer``, ``string``, ``string or null``."""
    if "anyOf" in schema:
        return " or ".join(_schema_name(s) for s in schema["anyOf"])
    ref = schema.get("$ref")
    return str(ref).rsplit("/", 1)[-1] if ref else str(schema.get("type", "any"))


# -- explorer ---------------------------------------------------------------------------------

@router.get("/", response_class=HTMLResponse)
def explorer(request: Request, node: NodeDep) -> HTMLResponse:
    try:
        checkpoint: str | None = node.checkpoint()
        signers = node.checkpoint_signers()
    except NotFound:
        checkpoint, signers = None, []
    grants = node.grants()
    agencies = [{**a, "grants": grants.get(a["id"], [])} for a in node.agencies()]
    return _page(request, "explorer.html", {
        "network": node.network, "agency": node.agency, "head": node.head(),
        "blocks": node.recent_blocks(20), "agencies": agencies, "checkpoint": checkpoint,
        "signers": signers, "types": node.types()})


TXS_PER_PAGE = 100
"""Transactions a block's page shows at once (a full block holds thousands: 1.3 MB of HTML)."""


@router.get("/blocks/{height}", response_class=HTMLResponse)
def block_page(request: Request, node: NodeDep, height: int, page: int = 1) -> HTMLResponse:
    try:
        header = node.block(height, 0, 0)["header"]
    except NotFound as e:
        return _error_page(request, "No such block", str(e), 404)
    pages = max(1, -(-header["tx_count"] // TXS_PER_PAGE))
    page = min(max(page, 1), pages)
    first = (page - 1) * TXS_PER_PAGE
    block = node.block(height, first, TXS_PER_PAGE)
    txs = [_summarise(tx, node.zone) for tx in block["transactions"]]
    top = node.head()["height"]
    return _page(request, "block.html", {"network": node.network, "header": header,
                                         "txs": txs, "top": top, "page": page, "pages": pages,
                                         "first": first, "per": TXS_PER_PAGE})


def _summarise(tx: dict[str, Any], zone: dt.tzinfo) -> dict[str, Any]:
    """What the explorer shows of a transaction: its kind, signers and the anchor or decision."""
    b = tx["body"]
    kind = tx["type"]
    rows: list[tuple[str, str]]
    if kind == "genesis":
        rows = [("network", b["network"]), ("quorum", str(b["quorum"])),
                ("agencies", ", ".join(a["id"] for a in b["agencies"]))]
    elif kind == "governance":
        args = b["args"]
        if b["action"] == "register_type":
            t = args["type"]
            detail = f"{t['id']} ({t.get('title', '')}): " + ", ".join(
                [*t["claims"], *t.get("derived", {})])
        else:
            detail = ", ".join(f"{k}={_when(v, zone) if k in _TIMES else v}"
                               for k, v in sorted(args.items()))
        rows = [("action", f"#{b['seq']} {b['action']}"), ("arguments", detail)]
    elif kind == "issue":
        rows = [("credential id", b["credential_id"]), ("issuer", b["issuer"]),
                ("type", b["type"]), ("status index", str(b["status_index"])),
                ("valid", f"{_when(b['valid_from'], zone)} → {_when(b['valid_until'], zone)}")]
    elif kind == "status":
        rows = [("credential id", b["credential_id"]), ("status", b["status"]),
                ("reason", b["reason"])]
    elif kind == "credit":
        rows = [("subject (pseudonym)", b["subject"]), ("category", b["category"]),
                ("points", str(b["points"])), ("reason", b["reason"]),
                ("expires", _when(b["expiry"], zone))]
    elif kind == "approval":
        rows = [("service", b["service"]), ("decision", f"{b['decision']} ({b['path']})"),
                ("reasons", ", ".join(b["reasons"]) or "—"), ("rule hash", b["rule_hash"])]
    else:
        rows = []
    return {"txid": tx["txid"], "type": kind, "signers": tx["signers"], "rows": rows}


_TIMES = frozenset({"from", "until", "at"})


# -- verifier ---------------------------------------------------------------------------------

@router.get("/verify", response_class=HTMLResponse, name="verify_page")
def verify_page(request: Request, node: NodeDep) -> HTMLResponse:
    return _verify_form(request, node, None)


def _verify_form(request: Request, node: NodeDep, error: str | None,
                 typed: dict[str, str] | None = None,
                 ticked: tuple[str, list[str]] = ("", [])) -> HTMLResponse:
    """The verifier's form; with ``typed``, the outside-issuer form filled in again with what
    was sent, and with ``ticked`` (a type and claim names) that type's boxes ticked again
    (after an error, nothing typed or ticked is lost)."""
    types = [{"id": k, "title": v.get("title", k), "claims": list(v["claims"]),
              "derived": list(v.get("derived", {}))} for k, v in node.types().items()]
    return _page(request, "verify.html", {"network": node.network, "types": types,
                                          "foreign": trust_of(request.app) is not None,
                                          "error": error,
                                          "typed": typed or {"type": "", "claims_text": ""},
                                          "ticked": {"type": ticked[0],
                                                     "claims": set(ticked[1])}},
                 status_code=200 if error is None else 400)


@router.get("/verify/request", include_in_schema=False)
@router.get("/verify/check", include_in_schema=False)
def back_to_the_form(request: Request) -> RedirectResponse:
    """A reload or a typed address of a form's target: the form, not a 405 (a path, not a URL
    built from the Host header, as the pages' links)."""
    return RedirectResponse(str(request.scope.get("root_path", ""))
                            + str(request.app.url_path_for("verify_page")), status_code=303)


@router.post("/verify/request", response_class=HTMLResponse)
def create_request(request: Request, node: NodeDep,
                   credential_type: Annotated[str, Form(alias="type")] = "",
                   claims: Annotated[list[str] | None, Form()] = None,
                   claims_text: Annotated[str, Form()] = "") -> Response:
    # The node's configured audience, as for POST /v1/presentation-requests: not the request's
    # Host header, which the client (or a proxy) chooses.
    refused = _from_another_site(request)
    if refused is not None:
        return refused
    audience = request.app.state.settings.audience
    # A type from outside the network (ADR 39) names its claims in a text field.
    names = (claims or []) + [c.strip() for c in claims_text.split(",") if c.strip()]
    # what the outside-issuer form sent, to fill it in again after an error
    typed = {"type": credential_type, "claims_text": claims_text} if claims_text else None
    # and the boxes ticked on a type's own form
    ticked = (credential_type, claims or []) if not claims_text else ("", [])
    try:
        charge_qr(request, "a presentation request with its QR code")
        pending = node.new_request(credential_type.strip(), names, audience,
                                   foreign=trust_of(request.app) is not None)
    except RateLimited as e:
        page = _verify_form(request, node, str(e), typed, ticked)
        page.status_code = 429
        page.headers["Retry-After"] = str(e.retry_after)
        return page
    except LedgerError as e:
        return _verify_form(request, node, str(e), typed, ticked)
    # Post/redirect/get: a reload shows this request again (not a new nonce and QR code the
    # citizen has not scanned), and Back does not ask to send the form again. The QR code is
    # drawn (and paid for) here; the page it redirects to takes it once without paying again.
    fresh = _fresh_qr(request)
    qr = _qr_of(_request_text(pending))
    with request.app.state.fresh_qr_lock:
        fresh[pending.request.nonce] = qr
        while len(fresh) > FRESH_QR:
            fresh.popitem(last=False)
    return _see(request, "request_page", nonce=pending.request.nonce)


FRESH_QR = 256
"""Requests just made whose drawn QR code waits for the page they redirect to."""


def _from_another_site(request: Request) -> Response | None:
    """403 for a form sent from another site's page. A page in another tab could otherwise
    post its own presentation into the official's open request (its nonce is in the QR
    code): the desk cookie (SameSite=Strict) is not sent then, a new one came back, and the
    official's next check showed the other page's VERIFIED verdict; or spend the desk's
    rate limit. Browsers say where a form came from (``Sec-Fetch-Site``; ``Origin`` in
    older ones); a client that says neither (a script, curl) is no other site's page."""
    site = request.headers.get("sec-fetch-site")
    origin = request.headers.get("origin")
    ours = {origin_of(str(request.base_url)), origin_of(request.app.state.settings.audience)}
    if site == "same-origin" or (site is None and (
            origin is None or (origin != "null" and origin_of(origin) in ours))):
        return None
    return _error_page(request, "Refused: sent from another site",
                       "This desk's forms are taken only from its own pages. Open "
                       "the verify page of this node and create the request there.", 403)


_SETUP = threading.Lock()


def _fresh_qr(request: Request) -> OrderedDict[str, str]:
    """The app's requests just made and their drawn QR codes (made once, under a lock: the
    threadpool's handlers may be first to ask at the same moment)."""
    state = request.app.state
    got: OrderedDict[str, str] | None = getattr(state, "fresh_qr", None)
    if got is None:
        with _SETUP:
            got = getattr(state, "fresh_qr", None)
            if got is None:
                state.fresh_qr_lock = threading.Lock()
                got = state.fresh_qr = OrderedDict()
    return got


def _request_text(pending: PendingRequest) -> str:
    """The request as the wallet reads it: the page's text and its QR code's content."""
    return json.dumps(pending.request.to_json(), separators=(",", ":"))


def _qr_of(text: str) -> str:
    try:
        return qr_svg(text, dark="#111", light="#fff")
    except segno.DataOverflowError:
        return ""  # the page still gives the request as text (a long outside type, many claims)


def _see(request: Request, name: str, **params: str) -> RedirectResponse:
    """303 to a page of this node, as a path (not a URL built from the Host header)."""
    return RedirectResponse(str(request.scope.get("root_path", ""))
                            + str(request.app.url_path_for(name, **params)), status_code=303)


@router.get("/verify/request/{nonce}", response_class=HTMLResponse, name="request_page")
async def request_page(request: Request, node: NodeDep, nonce: str) -> Response:
    """An open request's page (its QR code drawn again, or taken from the cache, and paid for
    as a new request's is); one answered already: its verdict."""
    if request.headers.get("sec-fetch-site") in ("cross-site", "same-site") \
            and request.headers.get("sec-fetch-mode") != "navigate":
        # an <img> of another site's page, with a nonce from a QR code: it would make the
        # node draw the code again on the desk's rate limit (a link followed is a navigation)
        return _error_page(request, "Refused: loaded by another site",
                           "This page is shown only as a page of its own.", 403)
    answered = _to_verdict_of(request, nonce)
    if answered is not None:
        return answered
    try:
        pending = node.request(nonce)
    except NotFound:
        return _error_page(request, "This request is no longer open",
                           f"Requests stay open {REQUEST_TTL // 60} minutes and get one "
                           "verdict. Create a new request.", 404)
    fresh = _fresh_qr(request)
    with request.app.state.fresh_qr_lock:
        # a HEAD (a link checker, a browser's prefetch) leaves the drawing to the page's GET
        qr = fresh.get(nonce) if request.scope.get(HEAD_AS_GET) else fresh.pop(nonce, None)
    if qr is not None:  # right after the form that drew it
        return _request_page(request, node, pending, None, qr=qr)
    try:
        charge_qr(request, "showing a request's QR code again")
    except RateLimited as e:
        page = _error_page(request, "Too many requests", str(e), 429)
        page.headers["Retry-After"] = str(e.retry_after)
        return page
    return await run_in_threadpool(_request_page, request, node, pending, None)


VERDICTS_KEPT = 1000
"""Verdict pages the node keeps, all desks together (each for the request's lifetime,
:data:`REQUEST_TTL`) so a reload or Back shows the verdict again (ADR 50). Past it, a verdict
of the client address whose desks hold the most goes first (the oldest of its busiest desk):
a check without a cookie makes a new desk, so a flood of them from one address pushes out
only that address's verdicts, not the officials' elsewhere."""
VERDICTS_PER_DESK = 100
"""Verdict pages one desk (a browser's :data:`DESK_COOKIE`) keeps; past it, its own oldest
goes: a busy desk, or a page flooding one, pushes out only its own verdicts."""


DESK_COOKIE = "desk"
"""A random id the desk's browser gets with its first verdict (HttpOnly, SameSite=Strict):
a verdict, which shows the citizen's claims, is shown again only to the browser that made
the check. Its id is unguessable, but a request's nonce is not secret (it is in the QR code
and in the presentation), so the nonce alone must not lead to it (ADR 50)."""
SECURE_DESK_COOKIE = "__Host-desk"
"""Its name where the browser came by https: a ``__Host-`` cookie is the host's alone (Secure,
``Path=/``, no ``Domain``), so a page of a sibling subdomain cannot plant a desk id of its
choosing, then read that desk's verdicts with a nonce from a QR code (ADR 53)."""


def _desk(request: Request) -> str | None:
    """The desk id the browser sent (in the cookie its way of coming names)."""
    return request.cookies.get(SECURE_DESK_COOKIE if _over_https(request) else DESK_COOKIE)


class _Kept(NamedTuple):
    until: float  # monotonic time it stops being shown
    desk: str  # the browser's DESK_COOKIE that made the check
    context: dict[str, Any]
    client: str = ""  # the address (as rate limits key it) of the check: a new desk's owner


def _verdicts(request: Request) -> OrderedDict[str, _Kept]:
    """Verdict pages by an unguessable id, oldest first (expired ones gone). Only the event
    loop's thread touches them (the handlers that do are async)."""
    state = request.app.state
    got: OrderedDict[str, _Kept] | None = getattr(state, "verdicts", None)
    if got is None:
        got = state.verdicts = OrderedDict()
        state.answered = {}
        state.desk_verdicts = {}
        state.desk_owner = {}  # desk -> the client address that made it
        state.owner_held = {}  # client address -> verdicts its desks hold
    now = _time.monotonic()
    while got and next(iter(got.values())).until <= now:
        _forget(request, next(iter(got)))
    return got


def _forget(request: Request, vid: str) -> None:
    """Drop the verdict page ``vid``, and what points to it."""
    state = request.app.state
    kept: _Kept = state.verdicts.pop(vid)
    state.answered.pop(kept.context["req"].nonce, None)
    desks: dict[str, OrderedDict[str, None]] = state.desk_verdicts
    mine = desks[kept.desk]
    del mine[vid]
    owner = state.desk_owner[kept.desk]
    state.owner_held[owner] -= 1
    if not state.owner_held[owner]:
        del state.owner_held[owner]
    if not mine:
        del desks[kept.desk]
        del state.desk_owner[kept.desk]


def _keep_verdict(request: Request, vid: str, kept: _Kept) -> None:
    """Keep a verdict page under ``vid`` for its request: within :data:`VERDICTS_PER_DESK`
    for its desk (its own oldest go) and :data:`VERDICTS_KEPT` in all, so one desk cannot push
    out the others'. Past the latter, the client address whose desks hold the most gives up
    the oldest verdict of its busiest desk: a desk counts for the address that made it, so
    checks without a cookie (a new desk each) from one address cannot push out the desks of
    others (they held one verdict each, and the oldest of those went first)."""
    verdicts = _verdicts(request)
    state = request.app.state
    desks: dict[str, OrderedDict[str, None]] = state.desk_verdicts
    owners: dict[str, str] = state.desk_owner
    held: dict[str, int] = state.owner_held
    verdicts[vid] = kept
    state.answered[kept.context["req"].nonce] = vid
    mine = desks.setdefault(kept.desk, OrderedDict())
    mine[vid] = None
    owner = owners.setdefault(kept.desk, kept.client)
    held[owner] = held.get(owner, 0) + 1
    while len(mine) > VERDICTS_PER_DESK:
        _forget(request, next(iter(mine)))
    while len(verdicts) > VERDICTS_KEPT:
        most = max(held, key=held.__getitem__)
        busiest = max((v for d, v in desks.items() if owners[d] == most), key=len)
        _forget(request, next(iter(busiest)))


def _answered(request: Request) -> dict[str, str]:
    """Nonce -> id of its verdict page, while it is kept."""
    _verdicts(request)
    answered: dict[str, str] = request.app.state.answered
    return answered


def _to_verdict_of(request: Request, nonce: str) -> Response | None:
    """For an answered request: its verdict, to the browser that made the check; to anyone
    else a page that says it was answered, and nothing of what it showed. None: not answered."""
    vid = _answered(request).get(nonce)
    if vid is None:
        return None
    kept = _verdicts(request).get(vid)
    if kept is not None and _desk(request) == kept.desk:
        return _see(request, "verdict_page", vid=vid)
    return _error_page(request, "This request was answered",
                       "Its verdict is shown only in the browser that made the check. Create a "
                       "new request to check a credential.", 400)


@router.get("/verify/result/{vid}", response_class=HTMLResponse, name="verdict_page")
async def verdict_page(request: Request, vid: str) -> HTMLResponse:
    kept = _verdicts(request).get(vid)
    if kept is None or _desk(request) != kept.desk:
        return _error_page(request, "This verdict is no longer shown",
                           f"A verdict is shown for {REQUEST_TTL // 60} minutes after its "
                           "check, in the browser that made it. Create a new request to check "
                           "the credential again.", 404)
    return _page(request, "verdict.html", kept.context)


async def _request_page_again(request: Request, node: Node, pending: PendingRequest,
                              error: str, pasted: str = "", field: str = "presentation"
                              ) -> HTMLResponse:
    """The request's page again after a check that gave no verdict: its QR code is drawn
    again (or taken from the cache) off the event loop, and paid for as a new request's is
    (ADR 47), else a failed check would be a cheap way to make the node draw QR codes."""
    try:
        charge_qr(request, "showing a request's QR code again")
    except RateLimited as e:
        page = _error_page(request, "Too many requests", f"{error} {e}", 429)
        page.headers["Retry-After"] = str(e.retry_after)
        return page
    return await run_in_threadpool(_request_page, request, node, pending, error, pasted,
                                   field=field)


def _request_page(request: Request, node: Node, pending: PendingRequest,
                  error: str | None, pasted: str = "", qr: str | None = None,
                  field: str = "presentation") -> HTMLResponse:
    """The request's page; with ``error``, marked on the form's ``field`` (``presentation``,
    the pasted text, or ``qr``, the uploaded picture)."""
    text = _request_text(pending)
    if qr is None:
        qr = _qr_of(text)
    return _page(request, "request.html", {
        "network": node.network, "req": pending.request, "request_json": text, "qr_svg": qr,
        "zone": node.zone,
        "expires": pending.created + REQUEST_TTL, "minutes": REQUEST_TTL // 60,
        "error": error, "error_field": field, "pasted": pasted},
        status_code=200 if error is None else 400)


class _Turn:
    """The checks of one request's answers, one at a time (:func:`_one_check_at_a_time`)."""

    __slots__ = ("lock", "users")

    def __init__(self) -> None:
        self.lock = anyio.Lock()
        self.users = 0  # checks holding or waiting for the lock


@contextlib.asynccontextmanager
async def _one_check_at_a_time(request: Request, nonce: str) -> AsyncIterator[None]:
    """Within: the only check of ``nonce``'s answers in this app. A form sent twice (a double
    click on Verify, a reload while the first was checked) used to find the request taken by
    the first check and no verdict kept yet, and showed "Unknown or expired request": the
    browser shows the last answer, so the official lost the verdict and the citizen had to
    answer a new request. Now the second waits for the first and is sent to its verdict.
    Only the event loop's thread touches the table (the handler is async); an entry lives
    while a check of its request runs or waits."""
    state = request.app.state
    turns: dict[str, _Turn] | None = getattr(state, "checking", None)
    if turns is None:
        turns = state.checking = {}
    turn = turns.get(nonce)
    if turn is None:
        turn = turns[nonce] = _Turn()
    turn.users += 1
    try:
        async with turn.lock:
            yield
    finally:
        turn.users -= 1
        if not turn.users:
            del turns[nonce]


@router.post("/verify/check", response_class=HTMLResponse)
async def check_presentation(request: Request, node: NodeDep,
                             nonce: Annotated[str, Form()] = "",
                             presentation: Annotated[str, Form()] = "",
                             qr: Annotated[UploadFile | None, File()] = None) -> Response:
    refused = _from_another_site(request)
    if refused is not None:
        return refused
    async with _one_check_at_a_time(request, nonce):
        return await _check_presentation(request, node, nonce, presentation, qr)


async def _check_presentation(request: Request, node: Node, nonce: str, presentation: str,
                              qr: UploadFile | None) -> Response:
    answered = _to_verdict_of(request, nonce)
    if answered is not None:  # sent again (a reload, Back): the verdict it got
        return answered
    try:
        pending = node.request(nonce)
    except NotFound:
        return _error_page(request, "Unknown or expired request",
                           "There is no open presentation request with this nonce: it expired "
                           f"(requests stay open {REQUEST_TTL // 60} minutes) or was already "
                           "answered. Create a new request.", 400)
    image = await qr.read(MAX_UPLOAD + 1) if qr is not None else b""
    presentation = _unquoted(presentation)
    foreign: str | None = None  # an SD-JWT+KB from an issuer outside the network (ADR 39)
    try:
        if presentation.strip():  # the text, if both came: it is what the official pasted
            image = b""
        if image:  # pure-Python decoding: off the event loop, which serves every other client,
            # two at a time, so uploads cannot take every thread the sync routes share
            limiter = _decoders(request)
            with _decode_turn(request, limiter):
                envelope = await anyio.to_thread.run_sync(_envelope_from_image, image,
                                                          limiter=limiter)
            foreign = _foreign_text(envelope)
        elif "~" in presentation:
            foreign = "".join(presentation.split())
            envelope = b""
        elif presentation.strip():
            envelope = _envelope_from_text(presentation)
        else:
            raise BadInput("Paste the citizen's presentation or upload its QR image.")
        if foreign is None:
            try:
                kb_text = Envelope.from_bytes(envelope).sd_jwt_kb
            except DecodeError as e:
                raise BadInput("This is not a whole presentation: copy all of its text again, "
                               f"or upload its QR picture (technical detail: {e}).") from e
        elif trust_of(request.app) is None:
            raise BadInput("This is a credential from an issuer outside the network (SD-JWT "
                           "text), and this node has no trust list for those (trust_list in "
                           "its settings).")
        _for_this_request(foreign if foreign is not None else kb_text, pending)
    except BadInput as e:  # the request stays open: the official may try again
        return await _request_page_again(request, node, pending, str(e), presentation,
                                         "qr" if image else "presentation")
    except DecoderBusy as e:
        page = await _request_page_again(request, node, pending, str(e), presentation, "qr")
        if page.status_code != 429:
            page.status_code = 503
            page.headers["Retry-After"] = "5"
        return page
    try:  # off the event loop too: a verification takes milliseconds of CPU
        if foreign is None:
            report = await run_in_threadpool(node.verify, envelope, nonce)
        else:
            report = await run_in_threadpool(verify_foreign_for, request.app, node, foreign,
                                             nonce)
    except NotFound:
        return _error_page(request, "Unknown or expired request",
                           "The request expired or was answered meanwhile. Create a new "
                           "request.", 400)
    except LedgerError as e:  # refused before any verdict: the request is still open
        return await _request_page_again(request, node, pending, str(e), presentation,
                                         "qr" if image else "presentation")
    # Post/redirect/get: the verdict has an address of its own for the request's lifetime,
    # so a reload or Back shows it again instead of a refusal of the spent request.
    vid = secrets.token_urlsafe(18)
    desk = _desk(request) or secrets.token_urlsafe(18)
    _keep_verdict(request, vid, _Kept(_time.monotonic() + REQUEST_TTL, desk, {
        "network": node.network, "req": pending.request, "foreign": foreign is not None,
        **_verdict(report, node.zone)},
        client_key(request.client.host) if request.client else ""))
    see = _see(request, "verdict_page", vid=vid)
    if _desk(request) != desk:
        if _over_https(request):
            see.set_cookie(SECURE_DESK_COOKIE, desk, httponly=True, samesite="strict",
                           secure=True, path="/")
        else:
            see.set_cookie(DESK_COOKIE, desk, httponly=True, samesite="strict",
                           path=str(request.scope.get("root_path", "")) + "/verify")
    return see


def _over_https(request: Request) -> bool:
    """Whether the browser reached this page over https: served so, or by the https public
    address (a proxy that ends TLS reaches the node itself over http). A desk on the office
    network may also use the node's plain http address: no Secure cookie there, or it would
    never come back."""
    audience = request.app.state.settings.audience
    return request.url.scheme == "https" or (
        audience.startswith("https://")
        and origin_of(audience) == origin_of("https://" + request.headers.get("host", "")))


def _unquoted(text: str) -> str:
    """Pasted text without the quotes it kept when copied from JSON or a chat."""
    t = text.strip()
    return t[1:-1] if len(t) >= 2 and t[0] == t[-1] and t[0] in "\"'" else text


def _for_this_request(kb_text: str, pending: PendingRequest) -> None:
    """BadInput (the request stays open) if the presentation names another request's nonce
    or another verifier: it cannot answer this one, so it spends nothing. Read from its
    key-binding JWT before any check; the checks that follow verify that JWT's signature."""
    try:
        kb = sdjwt.parse(kb_text).kb_jwt
        payload = sdjwt.parse_jws_payload(kb, "key-binding JWT") if kb else None
    except LedgerError:
        return  # malformed: the checks say how
    if not isinstance(payload, dict):
        return
    if payload.get("nonce") != pending.request.nonce:
        raise BadInput("This answer was made for another request (its code differs from this "
                       "page's). Ask the citizen to scan the code on this page and answer "
                       "again; this request stays open.")
    if payload.get("aud") != pending.request.audience:
        raise BadInput("This answer was made for another verifier's desk "
                       f"({str(payload.get('aud'))[:80]!r}). Ask the citizen to "
                       "scan the code on this page; this request stays open.")


_LABELS = {
    "envelope": "presentation readable", "presentation": "presentation readable",
    "nonce_fresh": "not a replay", "checkpoint": "signed by the network's agencies",
    "anchor_inclusion": "on the ledger", "anchor": "issued on the ledger",
    "issuer_authority": "issuer allowed to issue it", "trusted_issuer": "issuer trusted",
    "sd_jwt": "credential signature, dates and the citizen's key",
    "anchor_binding": "matches its ledger record", "requested_claims": "the claims asked for",
    "approval_decision": "the approval decision", "status": "current status",
}
# A refusal's detail quotes what it refused (a typ, a JSON member name, a nonce: up to 40
# characters of it), so its words are read only where ledger.sdjwt puts them, at its start:
# "exp … is not after" inside a forged header's typ is no expiry (round 20V). A NumericDate
# may have a fraction (RFC 7519; a foreign issuer's): said to the second (round 30T).
_EXP = re.compile(r"expired: exp (\d{1,12})(?:\.\d+)? is not after ")
_NBF = re.compile(r"not yet valid: nbf (\d{1,12})(?:\.\d+)? is after ")
_KB_FUTURE = re.compile(r"KB-JWT iat \S+ is in the future")
_KB_OLD = re.compile(r"KB-JWT iat \S+ is \S+s old, limit ")


def explain(name: str, detail: str, status: str, zone: dt.tzinfo = dt.UTC) -> str:
    """A failed check in words an official acts on: what is wrong and what to do next. The
    check's own detail stays on the page, folded, for whoever supports the desk."""
    if name in ("envelope", "presentation"):
        return ("This is not a whole presentation. Copy all of its text again, or upload its "
                "QR picture.")
    if name == "nonce_fresh":
        return "This answer was already used (a replay). Create a new request."
    if name == "checkpoint":
        return ("The ledger proof is not signed by enough of this network's agencies. Ask the "
                "citizen to refresh the wallet and answer again; if it fails again, do not "
                "accept the credential.")
    if name == "status":
        if status == "revoked":
            return ("The issuing agency revoked this credential. Do not accept it. (Its reason "
                    "is on the ledger; the explorer shows it.)")
        if status == "suspended":
            return ("The issuing agency has suspended this credential. Do not accept it now; "
                    "the citizen can ask the agency why.")
        return ("The credential's current status could not be determined. Try again in a "
                "moment, or check at a desk connected to a current node.")
    if name == "requested_claims":
        return ("The presentation does not show what you asked for (another type of "
                "credential, or claims missing). Ask the citizen to answer this request.")
    if name == "sd_jwt" and detail.startswith("KB-JWT"):  # the citizen's answer, not the
        # credential: its own dates, its key, its request
        if _KB_FUTURE.match(detail):
            return ("The citizen's device clock is wrong (the answer is dated in the future). "
                    "Ask the citizen to correct it and answer again.")
        if _KB_OLD.match(detail):
            return ("The citizen's answer is too old (made more than a few minutes ago). Ask "
                    "the citizen to answer this request again.")
        if detail.startswith("KB-JWT signature"):
            return ("The answer was not signed with the key the credential belongs to: it may "
                    "not be the citizen's own credential. Do not accept it.")
        if detail.startswith(("KB-JWT nonce ", "KB-JWT aud ")):
            return ("This answer was made for another request or desk. Ask the citizen to scan "
                    "the code of a new request.")
        return ("The citizen's answer is not valid (its own dates or form). Ask the citizen to "
                "answer again, with the device's clock right.")
    if name == "sd_jwt":
        if m := _EXP.match(detail):
            return (f"This credential expired on {_when(int(m.group(1)), zone)}. The citizen "
                    "needs a renewed one from the issuing agency.")
        if m := _NBF.match(detail):
            return (f"This credential is valid only from {_when(int(m.group(1)), zone)}. Check "
                    "it again then.")
        if detail.startswith("cnf.jwk is not the expected holder key"):
            return ("The answer was not signed with the key the credential belongs to: it may "
                    "not be the citizen's own credential. Do not accept it.")
    if name == "trusted_issuer":
        return "The issuer is not on this desk's trust list. Do not accept the credential."
    return "This credential does not check out. Do not accept it."


def _verdict(report: Report, zone: dt.tzinfo) -> dict[str, Any]:
    failed = [c for c in report.checks if not c.ok]
    return {"verified": report.verified, "status": report.status,
            "status_checked": any(c.name == "status" for c in report.checks),
            "advice": explain(failed[0].name, failed[0].detail, report.status, zone) if failed
            else None,
            "checks": [{"ok": c.ok, "label": _LABELS.get(c.name, c.name), "name": c.name,
                        "detail": _isolated(c.detail),
                        "why": None if c.ok else explain(c.name, c.detail, report.status, zone)}
                       for c in report.checks],
            # An issuer chose these values: bidi overrides and other format characters are
            # shown as escapes, as the command-line tools show them (ledger.display).
            "claims": {printable(k): printable(v if isinstance(v, str) else json.dumps(v))
                       for k, v in report.claims.items()}}


_B64URL = re.compile(r"[A-Za-z0-9_-]+={0,2}")


def _envelope_from_text(text: str) -> bytes:
    compact = "".join(text.split())
    if not _B64URL.fullmatch(compact):
        raise BadInput("The presentation is not base64url text (letters, digits, '-' and '_').")
    if len(compact) > (MAX_ENVELOPE * 4) // 3 + 4:
        raise BadInput(f"The presentation is longer than {MAX_ENVELOPE} bytes.")
    bare = compact.rstrip("=")
    try:
        return base64.urlsafe_b64decode(bare + "=" * (-len(bare) % 4))
    except (binascii.Error, ValueError) as e:
        raise BadInput(f"The presentation is not valid base64url: {e}.") from e


def _foreign_text(decoded: bytes) -> str | None:
    """A QR code's text if it is an SD-JWT+KB (ASCII with '~' separators), else None."""
    if b"~" not in decoded:
        return None
    try:
        text = decoded.decode("ascii").strip()
    except UnicodeDecodeError:
        return None
    return text if text.isprintable() else None


def _envelope_from_image(image: bytes) -> bytes:
    if len(image) > MAX_UPLOAD:
        raise BadInput(f"The image is larger than {MAX_UPLOAD // (1024 * 1024)} MiB.")
    if not image.startswith(_PNG_SIG):
        raise BadInput("Only PNG pictures can be read here (the wallet saves its QR code as "
                       "one): for a photo, paste the presentation's text instead.")
    try:
        gray, width, height = png_to_gray(image)
    except ValueError as e:
        raise BadInput(f"The image could not be read: {e}.") from e
    found = zxingcpp.read_barcodes(memoryview(gray).cast("B", (height, width)),
                                   formats=zxingcpp.BarcodeFormats(zxingcpp.BarcodeFormat.QRCode))
    if not found:
        raise BadInput("No QR code was found in the image.")
    return bytes(found[0].bytes)


# -- a small PNG reader (no imaging library needed) -------------------------------------------

_PNG_SIG = b"\x89PNG\r\n\x1a\n"
_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}


def png_to_gray(data: bytes) -> tuple[bytes, int, int]:
    """Decode a non-interlaced PNG into 8-bit grayscale; ``(pixels, width, height)``.

    Raises ValueError for anything that is not such a PNG or exceeds :data:`MAX_PIXELS`.
    Transparent pixels are composed over white.
    """
    if not data.startswith(_PNG_SIG):
        raise ValueError("not a PNG file")
    pos, ihdr, palette, idat = 8, b"", b"", bytearray()
    while pos + 8 <= len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        chunk = data[pos + 8:pos + 8 + length]
        if len(chunk) != length or len(data) < pos + 12 + length:
            raise ValueError("truncated PNG")
        pos += 12 + length
        if kind == b"IHDR":
            ihdr = chunk
        elif kind == b"PLTE":
            palette = chunk
        elif kind == b"IDAT":
            idat += chunk
        elif kind == b"IEND":
            break
    if len(ihdr) != 13:
        raise ValueError("PNG without a header")
    width, height, depth, ctype, _, _, interlace = struct.unpack(">IIBBBBB", ihdr)
    if ctype not in _CHANNELS or depth not in (1, 2, 4, 8, 16) or interlace:
        raise ValueError("unsupported PNG variant (interlaced or unknown colour type)")
    if not 0 < width * height <= MAX_PIXELS:
        raise ValueError(f"image size {width}x{height} is over {MAX_PIXELS} pixels")
    channels = _CHANNELS[ctype]
    bits = channels * depth
    stride, bpp = (width * bits + 7) // 8, max(1, bits // 8)
    if height * stride > MAX_DECODED:
        raise ValueError(f"image data of {height * stride / 2**20:.1f} MiB is over "
                         f"{MAX_DECODED / 2**20:g} MiB (a QR code needs far fewer pixels: send "
                         "a smaller or 8-bit grey image)")
    want = height * (stride + 1)
    try:
        inflater = zlib.decompressobj()
        raw = inflater.decompress(bytes(idat), want)
    except zlib.error as e:
        raise ValueError(f"corrupt PNG data ({e})") from e
    if len(raw) < want:
        raise ValueError("truncated PNG data")
    rows = _unfilter(raw, height, stride, bpp)
    return _to_gray(rows, width, height, depth, ctype, palette), width, height


def _unfilter(raw: bytes, height: int, stride: int, bpp: int) -> bytearray:
    out = bytearray(height * stride)
    prev = bytearray(stride)
    for y in range(height):
        f = raw[y * (stride + 1)]
        line = bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        if f == 1:
            for i in range(bpp, stride):
                line[i] = (line[i] + line[i - bpp]) & 0xFF
        elif f == 2:
            line = bytearray((a + b) & 0xFF for a, b in zip(line, prev, strict=True))
        elif f == 3:
            for i in range(stride):
                left = line[i - bpp] if i >= bpp else 0
                line[i] = (line[i] + ((left + prev[i]) >> 1)) & 0xFF
        elif f == 4:
            for i in range(stride):
                a = line[i - bpp] if i >= bpp else 0
                b = prev[i]
                c = prev[i - bpp] if i >= bpp else 0
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                pred = a if pa <= pb and pa <= pc else b if pb <= pc else c
                line[i] = (line[i] + pred) & 0xFF
        elif f != 0:
            raise ValueError(f"bad PNG filter type {f}")
        out[y * stride:(y + 1) * stride] = line
        prev = line
    return out


def _to_gray(rows: bytearray, width: int, height: int, depth: int, ctype: int,
             palette: bytes) -> bytes:
    channels = _CHANNELS[ctype]
    if depth < 8:  # gray or palette only: unpack the samples to one byte each
        per = 8 // depth
        mask = (1 << depth) - 1
        stride = (width * depth + 7) // 8
        samples = bytearray(width * height)
        for y in range(height):
            row = rows[y * stride:(y + 1) * stride]
            for x in range(width):
                byte = row[x // per]
                samples[y * width + x] = (byte >> (8 - depth * (x % per + 1))) & mask
        if ctype == 0:
            scale = 255 // mask
            return bytes(s * scale for s in samples)
        return _palette_gray(samples, palette)
    step = depth // 8
    values = rows[::step] if step == 2 else rows  # 16-bit: the high byte is enough
    if ctype == 3:
        return _palette_gray(values, palette)
    if channels == 1:
        return bytes(values)
    out = bytearray(width * height)
    for i in range(width * height):
        px = values[i * channels:(i + 1) * channels]
        if channels == 2:
            g, a = px[0], px[1]
        else:
            g = (px[0] * 299 + px[1] * 587 + px[2] * 114) // 1000
            a = px[3] if channels == 4 else 255
        out[i] = (g * a + 255 * (255 - a)) // 255
    return bytes(out)


def _palette_gray(indexes: bytes | bytearray, palette: bytes) -> bytes:
    n = len(palette) // 3
    if n == 0:
        raise ValueError("palette PNG without a palette")
    table = [(palette[3 * i] * 299 + palette[3 * i + 1] * 587 + palette[3 * i + 2] * 114) // 1000
             for i in range(n)]
    try:
        return bytes(table[i] for i in indexes)
    except IndexError as e:
        raise ValueError("palette index out of range") from e

