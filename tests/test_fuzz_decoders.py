"""Hypothesis fuzzing of every decoder: no crash, no hang, every refusal is a ``LedgerError``.

Each target parses untrusted input. The fuzzer feeds it (a) random bytes or text, (b) byte- or
character-level mutations of a valid sample (flip, cut, insert, delete, splice) and (c) *structural*
mutations: the valid sample is decoded, one node of its tree is replaced, deleted or joined by an
extra member, and it is re-encoded (and, for JWTs, re-signed with the right key so the mutation
reaches the code behind the signature check). A target may accept its input; when it refuses, the
exception must be an instance of :class:`ledger.errors.LedgerError` (the package's error tree),
never a bare ``ValueError``/``KeyError``/``IndexError``/``TypeError``/``RecursionError``.

The always-on run is short (``FUZZ_EXAMPLES`` examples per target, default 60). Long runs:
``CREDLEDGER_FUZZ_EXAMPLES=20000 .venv/bin/pytest tests/test_fuzz_decoders.py`` or
``scripts/test --slow`` (the ``slow`` copy of each target runs 40 times as many examples).
"""

from __future__ import annotations

import base64
import functools
import hashlib
import io
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ledger import codec, sdjwt
from ledger.archive import BlockRecord, read_archive, write_archive
from ledger.block import BlockHeader
from ledger.chain import Head
from ledger.checkpoint import Checkpoint, SignedCheckpoint, open_note, parse_vkey, vkey
from ledger.errors import LedgerError
from ledger.keys import PrivateKey
from ledger.network import demo_agency, genesis_tx, governance_tx, issue_tx
from ledger.presentation import Bundle, Envelope, Request
from ledger.statuslist import StatusList, check_status, make_token, verify_token
from ledger.tx import Tx

FUZZ_EXAMPLES = int(os.environ.get("CREDLEDGER_FUZZ_EXAMPLES", "60"))
LONG_FACTOR = 40
NOW = 1_700_000_100

ISSUER = PrivateKey(hashlib.sha256(b"fuzz-issuer").digest())
HOLDER = PrivateKey(hashlib.sha256(b"fuzz-holder").digest())
NODE = PrivateKey(hashlib.sha256(b"fuzz-node").digest())
NONCE, AUD = "fuzz-nonce", "https://verifier.example"


# -- samples -------------------------------------------------------------------------------------

@functools.cache
def samples() -> dict[str, Any]:
    """Valid inputs of every format, from fixed keys (built once, on first use)."""
    reg, edu = demo_agency("reg", "Registry"), demo_agency("edu", "Education")
    genesis = genesis_tx("demo", [reg, edu], 2, 1_700_000_000)
    gov = governance_tx("demo", 1, "register_type", {"type": {
        "id": "degree", "title": "Degree", "claims": {"name": "string", "born": "date"},
        "derived": {"age_over_18": {"claim": "born", "age_over": 18}}}}, [reg, edu])
    issue = issue_tx("demo", edu, b"\x07" * 32, "degree", 5, 1_700_000_000, 1_800_000_000,
                     1_700_000_001)
    header = BlockHeader("demo", 3, b"\x01" * 32, 1_700_000_005, 7, 2, b"\x02" * 32)
    head = Head(3, header.hash, 9, b"\x02" * 32, 1_700_000_005)
    cp = Checkpoint("demo", 9, b"\x02" * 32).sign("reg", reg.node_key).cosign("edu", edu.node_key)
    issued = sdjwt.issue_sd_jwt(
        issuer_key=ISSUER, issuer_kid="k1", claims={"name": "X", "level": "master",
                                                    "address": {"city": "Y"}},
        holder_jwk=sdjwt.jwk_from_ed25519(HOLDER.public.raw), vct="degree",
        iss="urn:credledger:demo:edu", iat=NOW - 10, nbf=NOW - 10, exp=NOW + 1000,
        status={"status_list": {"idx": 3, "uri": "urn:s"}}, decoys=2)
    kb = sdjwt.present(issued.serialize(), disclose=["name", "level"], holder_key=HOLDER,
                       nonce=NONCE, aud=AUD, iat=NOW)
    lst = StatusList.from_entries(2, 64, [(3, 1), (9, 2)])
    token = make_token(lst, sub="urn:s", iat=NOW - 5, exp=NOW + 100, ttl=60, key=NODE, kid="n")
    bundle = Bundle(issue.raw, 3, (b"\x03" * 32, b"\x04" * 32), cp.to_text(), issued.serialize())
    envelope = Envelope.from_bundle(bundle, kb)
    archive = io.BytesIO()
    write_archive(archive, "demo", 1, [BlockRecord(0, header.to_bytes(), (genesis.raw,),
                                                   (cp.to_text().encode(),))])
    return {"tx": [genesis.raw, gov.raw, issue.raw], "block": header.to_bytes(),
            "head": head.to_bytes(), "checkpoint": cp.to_text(), "vkey": vkey("reg", reg.node_key
                                                                             .public.raw),
            "sd_jwt": issued.serialize(), "sd_jwt_kb": kb, "status_list": lst.encode(),
            "token": token, "bundle": bundle.to_bytes(), "envelope": envelope.to_bytes(),
            "request": {"nonce": "n", "audience": "a", "type": "degree", "claims": ["x"]},
            "archive": archive.getvalue(), "reg": reg, "edu": edu}


# -- generic mutators ----------------------------------------------------------------------------

SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(1 << 63), max_value=(1 << 64) - 1),
    st.text(max_size=20), st.binary(max_size=40),
    st.sampled_from([0, 1, -1, 32, 64, (1 << 32), (1 << 40) + 1, "", "valid", "issue",
                     b"\x00" * 32, b"\x00" * 64]))
PACKABLE = st.recursive(SCALARS, lambda kids: st.one_of(
    st.lists(kids, max_size=4), st.dictionaries(st.text(max_size=8), kids, max_size=4)),
    max_leaves=12)
JSONISH = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(min_value=-(1 << 70), max_value=1 << 70),
              st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=20),
              st.sampled_from(["...", "_sd", "sha-256", "EdDSA", "none", "kb+jwt"])),
    lambda kids: st.one_of(st.lists(kids, max_size=4),
                           st.dictionaries(st.sampled_from(
                               ["_sd", "...", "a", "b", "cnf", "jwk", "status", "exp", "nbf",
                                "iat", "vct", "status_list", "idx", "uri"]) | st.text(max_size=6),
                               kids, max_size=4)), max_leaves=10)


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(value, dict):
        for k, v in value.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            out += _paths(v, (*prefix, i))
    return out


def mutate_tree(data: st.DataObject, value: Any, leaves: st.SearchStrategy[Any]) -> Any:
    """``value`` with one node replaced, deleted, or given an extra member/element."""
    path = data.draw(st.sampled_from(_paths(value)))
    action = data.draw(st.sampled_from(["replace", "delete", "extra"]))
    if not path:
        return data.draw(leaves)
    root = json.loads(json.dumps(value)) if not _has_bytes(value) else _copy(value)
    parent = root
    for p in path[:-1]:
        parent = parent[p]
    last = path[-1]
    if action == "replace":
        parent[last] = data.draw(leaves)
    elif action == "delete":
        del parent[last]
    elif isinstance(parent, dict):
        parent[data.draw(st.text(max_size=8))] = data.draw(leaves)
    else:
        parent.insert(data.draw(st.integers(0, len(parent))), data.draw(leaves))
    return root


def _has_bytes(v: Any) -> bool:
    if isinstance(v, bytes):
        return True
    if isinstance(v, dict):
        return any(_has_bytes(x) for x in v.values())
    if isinstance(v, list):
        return any(_has_bytes(x) for x in v)
    return False


def _copy(v: Any) -> Any:
    if isinstance(v, dict):
        return {k: _copy(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_copy(x) for x in v]
    return v


def mutate_bytes(data: st.DataObject, seed: bytes) -> bytes:
    n = len(seed)
    kind = data.draw(st.sampled_from(["flip", "cut", "insert", "delete", "splice", "random"]))
    if kind == "random" or n == 0:
        return data.draw(st.binary(max_size=256))
    i = data.draw(st.integers(0, n - 1))
    if kind == "flip":
        return seed[:i] + bytes([seed[i] ^ data.draw(st.integers(1, 255))]) + seed[i + 1:]
    if kind == "cut":
        return seed[:i]
    if kind == "insert":
        return seed[:i] + data.draw(st.binary(min_size=1, max_size=9)) + seed[i:]
    if kind == "delete":
        j = data.draw(st.integers(i + 1, min(n, i + 9)))
        return seed[:i] + seed[j:]
    j = data.draw(st.integers(0, n - 1))
    return seed[:i] + seed[j:]


def mutate_text(data: st.DataObject, seed: str, alphabet: str | None = None) -> str:
    chars = (st.sampled_from(alphabet) if alphabet else
             st.characters(codec="utf-8") | st.sampled_from("~.=+/-_\n \u2014AQgw"))
    n = len(seed)
    kind = data.draw(st.sampled_from(["flip", "cut", "insert", "delete", "splice", "random"]))
    if kind == "random" or n == 0:
        return data.draw(st.text(chars, max_size=200))
    i = data.draw(st.integers(0, n - 1))
    if kind == "flip":
        return seed[:i] + data.draw(chars) + seed[i + 1:]
    if kind == "cut":
        return seed[:i]
    if kind == "insert":
        return seed[:i] + data.draw(st.text(chars, min_size=1, max_size=6)) + seed[i:]
    if kind == "delete":
        j = data.draw(st.integers(i + 1, min(n, i + 9)))
        return seed[:i] + seed[j:]
    j = data.draw(st.integers(0, n - 1))
    return seed[:i] + seed[j:]


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _resign(jwt: str, key: PrivateKey, header: Any = None, payload: Any = None) -> str:
    h, p, _ = jwt.split(".")
    if header is not None:
        h = _b64(json.dumps(header).encode())
    if payload is not None:
        p = _b64(json.dumps(payload).encode())
    return f"{h}.{p}.{_b64(key.sign_raw(f'{h}.{p}'.encode()))}"


# -- targets -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Target:
    name: str
    run: Callable[[st.DataObject], None]


def _decode(raw: bytes) -> None:
    value = codec.decode(raw)
    assert codec.encode(value) == raw  # whatever decodes re-encodes to the same bytes


def t_codec(data: st.DataObject) -> None:
    seed = data.draw(st.sampled_from(samples()["tx"])) if data.draw(st.booleans()) else \
        codec.encode(data.draw(PACKABLE))
    _decode(mutate_bytes(data, seed))


def t_codec_structured(data: st.DataObject) -> None:
    value = data.draw(PACKABLE)
    raw = codec.encode(value)
    assert codec.decode(raw) == value
    _decode(raw)


def t_codec_deep(data: st.DataObject) -> None:
    """Nesting around the 32-level limit, packed by msgpack itself (bypassing ``encode``'s
    check): whatever ``decode`` accepts, ``encode`` must reproduce (found by Atheris)."""
    value = data.draw(SCALARS)
    for _ in range(data.draw(st.integers(28, 36))):
        value = [value] if data.draw(st.booleans()) else {"k": value}
    _decode(msgpack.packb(value, use_bin_type=True))


def t_tx_bytes(data: st.DataObject) -> None:
    Tx.from_bytes(mutate_bytes(data, data.draw(st.sampled_from(samples()["tx"]))))


def t_tx_structure(data: st.DataObject) -> None:
    raw = data.draw(st.sampled_from(samples()["tx"]))
    env = codec.decode(raw)
    payload = codec.decode(env["payload"])
    if data.draw(st.booleans()):
        env = mutate_tree(data, env, PACKABLE)
    else:
        if isinstance(env, dict):
            env["payload"] = codec.encode(mutate_tree(data, payload, PACKABLE))
    Tx.from_bytes(codec.encode(env))


def t_block(data: st.DataObject) -> None:
    seed = samples()["block"]
    raw = mutate_bytes(data, seed) if data.draw(st.booleans()) else codec.encode(
        mutate_tree(data, codec.decode(seed), PACKABLE))
    BlockHeader.from_bytes(raw)


def t_head(data: st.DataObject) -> None:
    seed = samples()["head"]
    raw = mutate_bytes(data, seed) if data.draw(st.booleans()) else codec.encode(
        mutate_tree(data, codec.decode(seed), PACKABLE))
    Head.from_bytes(raw)


def t_checkpoint(data: st.DataObject) -> None:
    text = mutate_text(data, samples()["checkpoint"])
    signed = SignedCheckpoint.from_text(text if data.draw(st.booleans()) else text.encode(
        "utf-8", "surrogatepass"))
    s = samples()
    signed.verify_quorum({"reg": s["reg"].node_key.public, "edu": s["edu"].node_key.public}, 2)


def t_checkpoint_body(data: st.DataObject) -> None:
    body = samples()["checkpoint"].split("\n\n")[0] + "\n"
    Checkpoint.from_body(mutate_text(data, body))


def t_open_note(data: st.DataObject) -> None:
    s = samples()
    known = [s["vkey"]] if data.draw(st.booleans()) else [mutate_text(data, s["vkey"])]
    open_note(mutate_text(data, s["checkpoint"]), known)


def t_vkey(data: st.DataObject) -> None:
    parse_vkey(mutate_text(data, samples()["vkey"]))


B64URL = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_~."


def t_sdjwt_text(data: st.DataObject) -> None:
    s = samples()
    text = mutate_text(data, s["sd_jwt_kb"], B64URL if data.draw(st.booleans()) else None)
    sdjwt.parse(text) if data.draw(st.booleans()) else _verify_kb(text)


def _verify_kb(text: str) -> None:
    sdjwt.verify_presentation(text, issuer_public_jwk=sdjwt.jwk_from_ed25519(ISSUER.public.raw),
                              expected_nonce=NONCE, expected_audience=AUD, now=NOW)


def _split(kb: str) -> tuple[str, list[str], str]:
    parts = kb.split("~")
    return parts[0], parts[1:-1], parts[-1]


def _rebind(jwt: str, disclosures: list[str], kb_jwt: str, payload: Any = None) -> str:
    prefix = "~".join([jwt, *disclosures]) + "~"
    kb_payload = json.loads(_unb64(kb_jwt.split(".")[1]))
    kb_payload["sd_hash"] = _b64(hashlib.sha256(prefix.encode()).digest())
    return prefix + _resign(kb_jwt, HOLDER, payload=kb_payload if payload is None else payload)


def t_sdjwt_issuer_payload(data: st.DataObject) -> None:
    """Mutate the issuer-signed payload and re-sign it: the disclosure walk sees anything."""
    jwt, disclosures, kb_jwt = _split(samples()["sd_jwt_kb"])
    payload = json.loads(_unb64(jwt.split(".")[1]))
    if data.draw(st.booleans()):
        payload = mutate_tree(data, payload, JSONISH)
    else:  # point an existing digest slot at a (re)used digest or a nested array element
        digests = [_b64(hashlib.sha256(d.encode()).digest()) for d in disclosures]
        payload = mutate_tree(data, payload, st.sampled_from(digests) | st.just(
            [{"...": digests[0]}]) | st.just({"_sd": digests}))
    _verify_kb(_rebind(_resign(jwt, ISSUER, payload=payload), disclosures, kb_jwt))


def t_sdjwt_issuer_header(data: st.DataObject) -> None:
    jwt, disclosures, kb_jwt = _split(samples()["sd_jwt_kb"])
    header = mutate_tree(data, json.loads(_unb64(jwt.split(".")[0])), JSONISH)
    _verify_kb(_rebind(_resign(jwt, ISSUER, header=header), disclosures, kb_jwt))


def t_sdjwt_disclosure(data: st.DataObject) -> None:
    """Mutate one disclosure's JSON and reference its new digest from a re-signed payload."""
    jwt, disclosures, kb_jwt = _split(samples()["sd_jwt_kb"])
    i = data.draw(st.integers(0, len(disclosures) - 1))
    value = mutate_tree(data, json.loads(_unb64(disclosures[i])), JSONISH)
    new = _b64(json.dumps(value).encode())
    payload = json.loads(_unb64(jwt.split(".")[1]))
    old_digest = _b64(hashlib.sha256(disclosures[i].encode()).digest())
    payload["_sd"] = [_b64(hashlib.sha256(new.encode()).digest()) if d == old_digest else d
                      for d in payload["_sd"]]
    disclosures[i] = new
    _verify_kb(_rebind(_resign(jwt, ISSUER, payload=payload), disclosures, kb_jwt))


def t_sdjwt_kb(data: st.DataObject) -> None:
    jwt, disclosures, kb_jwt = _split(samples()["sd_jwt_kb"])
    kb_payload = json.loads(_unb64(kb_jwt.split(".")[1]))
    if data.draw(st.booleans()):
        kb_jwt = _resign(kb_jwt, HOLDER, header=mutate_tree(
            data, json.loads(_unb64(kb_jwt.split(".")[0])), JSONISH))
        _verify_kb("~".join([jwt, *disclosures, kb_jwt]))
    else:
        _verify_kb(_rebind(jwt, disclosures, kb_jwt, mutate_tree(data, kb_payload, JSONISH)))


def t_sdjwt_holder_verify(data: st.DataObject) -> None:
    text = mutate_text(data, samples()["sd_jwt"], B64URL)
    sdjwt.verify_issuer_signed(text, issuer_public_jwk=sdjwt.jwk_from_ed25519(
        ISSUER.public.raw), now=NOW, expected_holder_jwk=sdjwt.jwk_from_ed25519(
        HOLDER.public.raw))


def t_jwk(data: st.DataObject) -> None:
    jwk = mutate_tree(data, sdjwt.jwk_from_ed25519(HOLDER.public.raw), JSONISH)
    sdjwt.public_key_from_jwk(jwk)


def t_status_list(data: st.DataObject) -> None:
    seed = samples()["status_list"]
    value = mutate_tree(data, seed, JSONISH) if data.draw(st.booleans()) else {
        **seed, "lst": mutate_text(data, seed["lst"], B64URL[:-2])}
    lst = StatusList.decode(value, max_bytes=1 << 16)
    check_status({"status_list": {"idx": data.draw(st.integers(-5, 600)), "uri": "u"}},
                 lambda _u: lst)


def t_status_token(data: st.DataObject) -> None:
    token = samples()["token"]
    if data.draw(st.booleans()):
        token = mutate_text(data, token, B64URL[:-1] if data.draw(st.booleans()) else None)
    else:  # re-signed: the claims checks behind the signature see any JSON
        part = data.draw(st.integers(0, 1))
        decoded = json.loads(_unb64(token.split(".")[part]))
        mutated = mutate_tree(data, decoded, JSONISH)
        token = _resign(token, NODE, **{"header" if part == 0 else "payload": mutated})
    verify_token(token, public_key=NODE.public, expected_sub="urn:s", now=NOW)


def t_status_claim(data: st.DataObject) -> None:
    claim = mutate_tree(data, {"status_list": {"idx": 3, "uri": "urn:s"}}, JSONISH)
    lst = StatusList.from_entries(2, 64, [(3, 1)])
    result = check_status(claim, lambda u: lst if u == "urn:s" else None)
    assert result.status in {"valid", "revoked", "suspended", "undetermined"}


def t_bundle(data: st.DataObject) -> None:
    seed = samples()["bundle"]
    raw = mutate_bytes(data, seed) if data.draw(st.booleans()) else codec.encode(
        mutate_tree(data, codec.decode(seed), PACKABLE))
    Bundle.from_bytes(raw)


def t_envelope(data: st.DataObject) -> None:
    seed = samples()["envelope"]
    raw = mutate_bytes(data, seed) if data.draw(st.booleans()) else codec.encode(
        mutate_tree(data, codec.decode(seed), PACKABLE))
    Envelope.from_bytes(raw)


def t_request(data: st.DataObject) -> None:
    Request.from_json(mutate_tree(data, samples()["request"], JSONISH))


def t_archive(data: st.DataObject) -> None:
    _header, blocks = read_archive(io.BytesIO(mutate_bytes(data, samples()["archive"])))
    for _ in blocks:
        pass


TARGETS = [Target(f.__name__[2:], f) for f in (
    t_codec, t_codec_structured, t_codec_deep, t_tx_bytes, t_tx_structure, t_block, t_head,
    t_checkpoint, t_checkpoint_body, t_open_note, t_vkey, t_sdjwt_text, t_sdjwt_issuer_payload,
    t_sdjwt_issuer_header, t_sdjwt_disclosure, t_sdjwt_kb, t_sdjwt_holder_verify, t_jwk,
    t_status_list, t_status_token, t_status_claim, t_bundle, t_envelope, t_request, t_archive)]


def _fuzz(target: Target, examples: int) -> None:
    @given(data=st.data())
    @settings(max_examples=examples, database=None, deadline=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much,
                                     HealthCheck.data_too_large])
    def run(data: st.DataObject) -> None:
        try:
            target.run(data)
        except LedgerError:
            pass  # a refusal in the package's own terms: what we want
        except Exception as e:  # anything else is a bug in the decoder
            raise AssertionError(f"{target.name}: {type(e).__name__} escaped: {e}") from e

    run()


@pytest.mark.parametrize("target", TARGETS, ids=[t.name for t in TARGETS])
def test_decoder_refuses_only_with_ledger_errors(target: Target) -> None:
    _fuzz(target, FUZZ_EXAMPLES)


@pytest.mark.slow
@pytest.mark.parametrize("target", TARGETS, ids=[t.name for t in TARGETS])
def test_decoder_long_run(target: Target) -> None:
    _fuzz(target, FUZZ_EXAMPLES * LONG_FACTOR)


def test_the_fuzz_harness_can_fail() -> None:
    """A decoder that leaks a bare KeyError is caught by the harness (so the suite can fail)."""
    def leaky(data: st.DataObject) -> None:
        if data.draw(st.integers(0, 3)) == 3:
            raise KeyError("leaked")
    with pytest.raises(AssertionError, match="KeyError escaped"):
        _fuzz(Target("leaky", leaky), 50)


def test_samples_are_valid() -> None:
    """The seeds are accepted as they are, so mutations start from deep inside each format."""
    s = samples()
    for raw in s["tx"]:
        Tx.from_bytes(raw)
    BlockHeader.from_bytes(s["block"])
    Head.from_bytes(s["head"])
    SignedCheckpoint.from_text(s["checkpoint"])
    _verify_kb(s["sd_jwt_kb"])
    verify_token(s["token"], public_key=NODE.public, expected_sub="urn:s", now=NOW)
    Bundle.from_bytes(s["bundle"])
    Envelope.from_bytes(s["envelope"])
    jwt, disclosures, kb_jwt = _split(s["sd_jwt_kb"])
    _verify_kb(_rebind(_resign(jwt, ISSUER), disclosures, kb_jwt))  # the re-signing path works
    _header, blocks = read_archive(io.BytesIO(s["archive"]))
    assert [b.height for b in blocks] == [0]
