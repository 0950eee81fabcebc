"""What the wallet checks before it keeps a credential bundle (pure: no I/O, time is a parameter).

In order, each a named ``step`` of :class:`~wallet.errors.BundleRefused`:

``bundle``      the bytes decode as a canonical, closed-schema bundle
``anchor``      the anchor is an ``issue`` transaction of this network, signed by a registry key
``issuer_key``  that key is an issuer key of the anchoring agency, valid at issuance, and the
                agency was granted the credential type then
``sd_jwt``      the SD-JWT's issuer signature verifies under that key; disclosures, validity;
                every claim selectively disclosable on its own (none in the clear, none nested
                in another: the preview could not name it)
``holder``      ``cnf.jwk`` is this wallet's holder key
``credential_id`` the anchor's credential_id is SHA-256 of this issuer-signed JWT, and its type,
                issuer, validity window and status index match the credential's
``checkpoint``  the checkpoint is final: a quorum of the registry's agency nodes signed it
``inclusion``   the anchor is in the log the checkpoint commits to (RFC 9162 proof)
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from ledger import merkle, sdjwt
from ledger.checkpoint import SignedCheckpoint
from ledger.credentials import issuer_uri, status_list_uri
from ledger.errors import LedgerError
from ledger.finality import verify_final
from ledger.foreign import all_withholdable
from ledger.presentation import Bundle, issuer_jwk_at_issuance
from ledger.state import Registry, status_list_of
from ledger.tx import Tx
from wallet.errors import BundleRefused

__all__ = ["VerifiedBundle", "verify_bundle"]


@dataclass(frozen=True, slots=True)
class VerifiedBundle:
    """A bundle that passed :func:`verify_bundle`, with the metadata the wallet lists."""

    bundle: Bundle
    credential_id: bytes
    type: str
    issuer: str
    valid_from: int
    valid_until: int


def verify_bundle(unverified: bytes, *, registry: Registry, holder_jwk: dict[str, str],
                  now: int) -> VerifiedBundle:
    """Return the verified bundle or raise :class:`BundleRefused` naming the failed step."""
    step = "bundle"
    try:
        bundle = Bundle.from_bytes(unverified)
        step = "anchor"
        anchor = _anchor(bundle, registry)
        b = anchor.body
        step = "issuer_key"
        jwk = issuer_jwk_at_issuance(anchor, registry)
        step = "sd_jwt"
        try:
            claims = sdjwt.verify_issuer_signed(bundle.sd_jwt, issuer_public_jwk=jwk, now=now,
                                                expected_holder_jwk=holder_jwk, vc_only=True)
        except sdjwt.HolderKeyError as e:
            raise BundleRefused("holder", f"this credential is bound to another holder key, "
                                          f"none of this wallet's ({e}): was it issued for "
                                          "another wallet?") from e
        # as for a credential from outside the network (ADR 10): a claim in the clear, or one
        # nested in another, went to every verifier with none of them named in the preview
        all_withholdable(sdjwt.parse(bundle.sd_jwt))
        step = "credential_id"
        _matches_anchor(bundle, claims, anchor)
        step = "checkpoint"
        signed = SignedCheckpoint.from_text(bundle.checkpoint)
        verify_final(signed, registry, now)
        step = "inclusion"
        cp = signed.checkpoint
        merkle.verify_inclusion(merkle.leaf_hash(bundle.anchor), bundle.leaf_index, cp.size,
                                list(bundle.proof), cp.root)
    except BundleRefused:
        raise
    except (LedgerError, ValueError) as e:
        raise BundleRefused(step, str(e)) from e
    return VerifiedBundle(bundle, b["credential_id"], b["type"], b["issuer"], b["valid_from"],
                          b["valid_until"])


def _anchor(bundle: Bundle, registry: Registry) -> Tx:
    tx = Tx.from_bytes(bundle.anchor)
    if tx.type != "issue" or tx.net != registry.network:
        raise BundleRefused("anchor", f"the anchor is a {tx.type!r} transaction of {tx.net!r}, "
                                      f"not an issue of {registry.network!r}")
    tx.verify_signatures(registry.public_keys)
    return tx


def _matches_anchor(bundle: Bundle, claims: dict[str, Any], anchor: Tx) -> None:
    b = anchor.body
    jwt = bundle.sd_jwt.split("~", 1)[0]
    computed = hashlib.sha256(jwt.encode("ascii")).digest()
    if computed != b["credential_id"]:
        raise BundleRefused("credential_id", f"the anchor is for another credential: anchored "
                                             f"{b['credential_id'].hex()[:16]}…, this JWT "
                                             f"hashes to {computed.hex()[:16]}…")
    status = claims.get("status")
    st = status.get("status_list") if isinstance(status, dict) else None
    net = anchor.net
    number, entry = status_list_of(b["status_index"])
    # nbf and exp as a verifier checks them (ledger.presentation): the wallet lists and picks
    # a credential by its anchor's window, which must then be the one the JWT says
    expected = {"vct": b["type"], "iss": issuer_uri(net, b["issuer"]),
                "nbf": b["valid_from"], "exp": b["valid_until"],
                "status index": entry,
                "status list": status_list_uri(net, b["issuer"], b["type"], number)}
    found = {"vct": claims.get("vct"), "iss": claims.get("iss"),
             "nbf": claims.get("nbf"), "exp": claims.get("exp"),
             "status index": st.get("idx") if isinstance(st, dict) else None,
             "status list": st.get("uri") if isinstance(st, dict) else None}
    for name, want in expected.items():
        if found[name] != want:
            raise BundleRefused("credential_id", f"the credential's {name} {found[name]!r} is "
                                                 f"not its anchor's {want!r}")
