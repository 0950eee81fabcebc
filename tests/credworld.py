"""Test helper: a ledger with a degree type granted to "edu", issuing bundles and presenting."""

from __future__ import annotations

import hashlib
from collections.abc import Callable

from conftest import DAY, T0, LedgerHarness

from ledger import sdjwt
from ledger.credentials import (
    STATUS_LIST_SIZE,
    issue_credential,
    status_list,
    status_list_uri,
)
from ledger.finality import sign_checkpoint
from ledger.keys import PrivateKey
from ledger.network import Agency
from ledger.presentation import Bundle, Envelope, Report, Request, verify_envelope
from ledger.statuslist import StatusList

DEGREE = {"id": "degree", "title": "Degree",
          "claims": {"holder_name": "string", "degree_level": "string", "field": "string",
                     "awarded_on": "date"}, "derived": {}}
CLAIMS = {"holder_name": "Li Hua-91c2", "degree_level": "master", "field": "hydrology",
          "awarded_on": "2019-07-01"}
HOLDER = PrivateKey(hashlib.sha256(b"presentation-holder").digest())
REQ = Request("n-0123456789abcdef", "https://civil.example/verify", "degree",
              ("degree_level", "field"))


class World:
    def __init__(self, ledger: LedgerHarness, agencies: dict[str, Agency]) -> None:
        self.ledger, self.agencies = ledger, agencies
        reg, edu = agencies["reg"], agencies["edu"]
        ledger.govern("register_type", {"type": DEGREE}, [reg, edu], T0 + 1)
        ledger.govern("grant", {"agency": "edu", "type": "degree", "from": T0,
                                "until": T0 + 365 * DAY}, [reg, edu], T0 + 2)

    def issue(self, now: int = T0 + 10, key: PrivateKey | None = None,
              agency: str = "edu", status_index: int | None = None) -> tuple[Bundle, bytes]:
        cred = issue_credential(registry=self.ledger.registry, agency=agency,
                                issuer_key=key or self.agencies[agency].issuer_key,
                                kind="degree", claims=CLAIMS,
                                holder_jwk=sdjwt.jwk_from_ed25519(HOLDER.public.raw), now=now,
                                valid_for=30 * DAY, status_index=status_index)
        r = self.ledger.commit([cred.anchor], now)
        assert not r.rejected, r.rejected
        return self.bundle(cred.sd_jwt.serialize(), r.accepted[0][1]), cred.credential_id

    def bundle(self, sd_jwt: str, index: int) -> Bundle:
        store = self.ledger.store
        assert store.head is not None
        cp = sign_checkpoint("demo", store.head, [(a, self.agencies[a].node_key)
                                                  for a in ("reg", "edu")])
        return Bundle(store.entry(index), index, tuple(store.inclusion_proof(
            index, store.head.log_size)), cp.to_text(), sd_jwt)

    def lists(self) -> Callable[[str], StatusList | None]:
        store = self.ledger.store  # edu's degree lists now, each of its own entries
        lists = {status_list_uri("demo", "edu", "degree", n): status_list(
            (i - n * STATUS_LIST_SIZE, s) for i, s in store.status_entries("edu", "degree", n))
            for n in store.status_lists("edu", "degree") or [0]}
        return lists.get

    def verify(self, env: bytes, request: Request = REQ, now: int = T0 + 20,
               lists: Callable[[str], StatusList | None] | None = None) -> Report:
        return verify_envelope(env, request, registry=self.ledger.registry, now=now,
                               status_lists=lists or self.lists())


def present(bundle: Bundle, request: Request = REQ, iat: int = T0 + 20,
            holder: PrivateKey = HOLDER) -> bytes:
    kb = sdjwt.present(bundle.sd_jwt, disclose=request.claims, holder_key=holder,
                       nonce=request.nonce, aud=request.audience, iat=iat)
    return Envelope.from_bundle(bundle, kb).to_bytes()
