"""The citizen's wallet: a holder key and verified credential bundles in one encrypted file.

Every operation takes the time it needs as ``now``; the passphrase is a parameter (reading it
from the environment or a terminal is the CLI's business). The file format is in
:mod:`wallet.store`; the checks made before a bundle is kept are in :mod:`wallet.verify`.
"""

from __future__ import annotations

import base64
import errno
import hashlib
import os
import stat
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from ledger import sdjwt
from ledger.checkpoint import SignedCheckpoint
from ledger.errors import LedgerError
from ledger.files import write_atomic
from ledger.foreign import ForeignCredential, TrustList, receive_foreign
from ledger.keys import PrivateKey
from ledger.presentation import (
    MAX_ENVELOPE,
    ON_LEDGER_CLAIMS,
    Bundle,
    Envelope,
    Request,
    origin_of,
    with_implied_claims,
)
from ledger.state import Registry
from ledger.statuslist import StatusList, check_status
from ledger.tx import Tx
from wallet.errors import (
    BundleRefused,
    CredentialIdError,
    PresentationError,
    WalletChangedError,
    WalletError,
    WalletFileError,
)
from wallet.store import (
    MAX_FILE,
    MAX_KEYS,
    MAX_SHOWN_TO,
    Contents,
    KdfParams,
    StoredCredential,
    derive_key,
    lock,
    open_sealed,
    seal,
)
from wallet.verify import verify_bundle

__all__ = ["ALWAYS_VISIBLE", "CredentialInfo", "Disclosure", "Wallet", "approval_claims",
           "beyond_rule", "holder_key", "read_at_most", "verifier_of"]

ALWAYS_VISIBLE = ("iss", "vct", "iat", "nbf", "exp", "cnf", "status")
"""Claims of the issuer-signed JWT that every presentation shows (not selectively disclosable)."""

_MIN_PREFIX = 6
_HOLDER_KEY = b"credledger wallet holder key"


def holder_key(seed: bytes, index: int) -> PrivateKey:
    """A wallet's holder key ``index``: 0 is the seed's own (a wallet's only key before ADR
    52), each later one the keyed BLAKE2b of its index under the seed. Copy k of each
    credential is bound to key k: a verifier shown key k is shown no other."""
    if index == 0:
        return PrivateKey(seed)
    return PrivateKey(hashlib.blake2b(_HOLDER_KEY + index.to_bytes(4, "big"), key=seed,
                                      digest_size=32).digest())


@dataclass(frozen=True, slots=True)
class CredentialInfo:
    """What ``wallet list`` shows: no claim values."""

    id: str
    type: str
    issuer: str
    valid_from: int
    valid_until: int
    added: int
    shown: int = 0
    key: int = 0
    """The holder key it is bound to, counted from 0 (``wallet list`` shows it from 1, as the
    key files of ``wallet holder-key --copies N --out`` are numbered)."""
    foreign: bool = False
    """From an issuer outside the network (ADR 39): its issuer and type are names that issuer
    chose, which may be a network agency's (``civil``); the wallet says so wherever it names
    them."""

    def state(self, now: int) -> str:
        """``valid``, ``not yet valid`` or ``expired`` at ``now`` (ignores revocation), as a
        verifier whose clock reads ``now`` says it: allowing the verifiers' clock skew at both
        ends (:func:`ledger.sdjwt.window_state`, the rule the verifiers apply)."""
        return sdjwt.window_state(self.valid_from, self.valid_until, now)

    @classmethod
    def of(cls, c: StoredCredential) -> CredentialInfo:
        try:  # a damaged record is said by what opens it (show, present), not by a listing
            foreign = ForeignCredential.from_bytes(c.bundle) is not None
        except LedgerError:
            foreign = False
        return cls(c.id, c.type, c.issuer, c.valid_from, c.valid_until, c.added, c.shown,
                   c.key, foreign)


@dataclass(frozen=True, slots=True)
class Disclosure:
    """Exactly what a presentation will reveal, by claim name (the preview before signing).

    ``claims``: the selectively disclosable claims that will be disclosed (the request's names).
    ``always``: the claims every presentation of this credential shows: issuer, type, validity,
    status list entry and holder key. ``withheld``: the claims nobody learns from it.
    ``on_ledger``: claims not disclosed that the public ledger still shows anyone holding the
    presentation (an approval's decision: :data:`ledger.presentation.ON_LEDGER_CLAIMS`).
    """

    credential_id: str
    credential_type: str
    issuer: str
    audience: str
    nonce: str
    claims: tuple[str, ...]
    always: tuple[str, ...]
    withheld: tuple[str, ...]
    on_ledger: tuple[str, ...] = ()


class Wallet:
    """An opened wallet. Build it with :meth:`init`, :meth:`open` or :meth:`restore`."""

    __slots__ = ("_blob", "_contents", "_holders", "_key", "_params", "path", "presented",
                 "relinked", "replaced", "uncounted")

    def __init__(self, path: Path, contents: Contents, key: bytes, params: KdfParams,
                 blob: bytes) -> None:
        self.path = path
        self._contents = contents
        self._key = key
        self._params = params
        self._blob = blob
        self._holders: dict[int, PrivateKey] = {}
        self.replaced: Path | None = None
        """After :meth:`restore`: where the wallet file it replaced is kept, if there was one
        that differed from the backup."""
        self.uncounted: str | None = None
        """After :meth:`present`: why the presentation could not be counted as shown (the
        envelope is good; the next presentation may then use the same copy), else None."""
        self.presented: str | None = None
        """After :meth:`present`: the id of the copy presented (another copy of the one asked
        for when that one's key was shown meanwhile)."""
        self.relinked = False
        """After :meth:`application`: whether its holder key had been shown before (every
        key its credentials share was)."""

    def __repr__(self) -> str:
        return f"Wallet({str(self.path)!r}, {len(self._contents.credentials)} credentials)"

    # -- lifecycle --------------------------------------------------------------------------
    @classmethod
    def init(cls, path: Path, passphrase: bytes, *, seed: bytes | None = None) -> Wallet:
        """Create a new wallet file with a fresh Ed25519 holder key; never overwrites.

        A symbolic link to a file not made yet (a wallet kept on another disk, say) is
        followed, as :meth:`open` follows it: taken as it is, the link itself was the "wallet
        already there" that a new one must not replace."""
        path = path.resolve()
        if path.exists():
            raise WalletFileError(f"a wallet already exists at {path}; not overwriting it")
        params = KdfParams.fresh()
        key = derive_key(passphrase, params)
        contents = Contents(seed if seed is not None else PrivateKey.generate().seed)
        blob = seal(contents, key, params)
        try:
            write_atomic(path, blob, overwrite=False)
        except FileExistsError as e:
            raise WalletFileError(f"a wallet already exists at {path}; not overwriting it") from e
        except OSError as e:
            raise WalletFileError(f"cannot write {path}: {e.strerror or e}") from e
        return cls(path, contents, key, params, blob)

    @classmethod
    def open(cls, path: Path, passphrase: bytes) -> Wallet:
        """Open and decrypt an existing wallet; :class:`WalletFileError` if that fails.

        A symbolic link is followed once, here: saves replace the file it points to (and lock
        beside it), not the link."""
        path = path.resolve()
        blob = _read(path, "wallet")
        contents, key, params = open_sealed(blob, passphrase, where=str(path))
        return cls(path, contents, key, params, blob)

    @classmethod
    def restore(cls, backup: Path, path: Path, passphrase: bytes) -> Wallet:
        """Replace the wallet at ``path`` by ``backup``, after checking it opens with
        ``passphrase``. The backup is copied byte for byte (it stays encrypted). A wallet file
        already there that differs from the backup (credentials received since, say) is kept
        first, still encrypted, as ``<name>.replaced-<UTC time>`` beside it: nothing is lost
        to a restore of the wrong backup. :attr:`replaced` says where. Where that wallet
        opens with ``passphrase`` and counted presentations the backup did not, the counts
        are kept (the backup sealed again with them): a key shown since the backup was taken
        must not look fresh to the next verifier (ADR 52)."""
        blob = _read(backup, "backup")
        contents, key, params = open_sealed(blob, passphrase, where=str(backup))
        path = path.resolve()  # as in open(): through a link, to the file it points to
        kept = None
        with lock(path):
            try:
                _refuse_read_only(path)
                old = path.read_bytes() if path.exists() else blob
                if old != blob:
                    kept = _keep_aside(path, old)
                    counted = _with_counts(contents, old, passphrase)
                    if counted is not None:
                        contents, blob = counted, seal(counted, key, params)
                write_atomic(path, blob, overwrite=True)
            except OSError as e:
                raise WalletFileError(f"cannot write {path}: {e.strerror or e}") from e
        wallet = cls(path, contents, key, params, blob)
        wallet.replaced = kept
        return wallet

    def backup(self, dest: Path) -> None:
        """Copy the (still encrypted) wallet file to ``dest``; never overwrites ``dest``."""
        with lock(self.path, reading=True):
            blob = _read(self.path, "wallet")
            open_sealed(blob, key=self._key, where=str(self.path))  # it is ours and whole
            try:
                write_atomic(dest, blob, overwrite=False)
            except FileExistsError as e:
                raise WalletFileError(f"{dest} exists; not overwriting it") from e
            except OSError as e:
                raise WalletFileError(f"cannot write {dest}: {e.strerror or e}") from e

    def _save(self, contents: Contents) -> None:
        """Re-encrypt (fresh nonce) and replace the file, unless someone else changed it.

        Never saves contents it could not read back: a credential that does not fit the file
        format is refused here, not found out at the next open, with every credential lost."""
        with lock(self.path):
            self._save_locked(contents)

    def _save_locked(self, contents: Contents) -> None:
        """:meth:`_save`, with the wallet's lock held by the caller."""
        try:
            Contents.from_bytes(contents.to_bytes())
        except LedgerError as e:
            raise WalletError(f"not saved: the wallet could not be opened again with this "
                              f"credential in it ({e})") from e
        if _read(self.path, "wallet") != self._blob:
            raise WalletChangedError(f"{self.path} changed since it was opened (another "
                                     "wallet process?); open it again and retry")
        blob = seal(contents, self._key, self._params)
        if len(blob) > MAX_FILE:  # the sealed file, not only its contents, must open again
            raise WalletError(f"not saved: the wallet would be {len(blob):,} bytes, over "
                              f"the {MAX_FILE:,} a wallet file may have")
        _refuse_read_only(self.path)
        try:
            write_atomic(self.path, blob, overwrite=True)
        except OSError as e:
            raise WalletFileError(f"cannot write {self.path}: {e.strerror or e}") from e
        self._contents, self._blob = contents, blob

    def _catch_up(self) -> None:
        """With the lock held: take in what another process saved since this one opened the
        wallet (a presentation it counted, say), so that a choice made now sees it."""
        blob = _read(self.path, "wallet")
        if blob == self._blob:
            return
        try:
            contents, _, _ = open_sealed(blob, key=self._key, where=str(self.path))
        except WalletFileError as e:  # sealed under another key: not the wallet opened here
            raise WalletChangedError(f"{self.path} changed since it was opened and no longer "
                                     f"opens with its key ({e}): another wallet restored in "
                                     "its place? Open it again and retry") from e
        if contents.holder_seed != self._contents.holder_seed:
            self._holders.clear()  # another wallet restored in its place
        self._contents, self._blob = contents, blob

    # -- holder keys ------------------------------------------------------------------------
    def _holder(self, index: int) -> PrivateKey:
        got = self._holders.get(index)
        if got is None:
            got = self._holders[index] = holder_key(self._contents.holder_seed, index)
        return got

    def holder_jwk(self, index: int = 0) -> dict[str, str]:
        """The public JWK of holder key ``index`` (``cnf.jwk``); key 0 is the wallet's first."""
        return sdjwt.jwk_from_ed25519(self._holder(index).public.raw)

    def holder_jwks(self, n: int = 1) -> list[dict[str, str]]:
        """Holder keys 0 to ``n`` - 1, one for each copy of a credential an agency issues
        (ADR 22, 52). Every agency gets the same ones: copy k of each credential is bound to
        key k, so an application shows copies bound to one key (the node's proof that they
        are one holder's) and another verifier the copies bound to another."""
        if not 1 <= n <= MAX_KEYS:
            raise WalletError(f"give from 1 to {MAX_KEYS} holder keys")
        return [self.holder_jwk(i) for i in range(n)]

    def _key_of(self, jwk: object) -> int:
        """The index of the holder key ``jwk`` names, or 0 when it names none of this
        wallet's (the check then refuses it, saying so)."""
        try:  # the key as read: an Ed25519 JWK's unread "y", say, names the same key
            want = sdjwt.public_jwk(jwk) if isinstance(jwk, dict) else None
        except sdjwt.JwkError:
            want = None
        if want is not None:
            for i in range(MAX_KEYS):
                if want == self.holder_jwk(i):
                    return i
        return 0

    # -- credentials ------------------------------------------------------------------------
    def receive(self, unverified_bundle: bytes, *, registry: Registry, now: int) -> CredentialInfo:
        """Verify a bundle from an agency (see :mod:`wallet.verify`) and keep it.

        Raises :class:`~wallet.errors.BundleRefused` for a bundle that fails a check and
        :class:`WalletError` for one already in the wallet.
        """
        key = self._key_of(_bound_jwk(unverified_bundle))
        v = verify_bundle(unverified_bundle, registry=registry,
                          holder_jwk=self.holder_jwk(key), now=now)
        return self._keep(StoredCredential(v.credential_id, v.type, v.issuer, v.valid_from,
                                           v.valid_until, now, v.bundle.to_bytes(), key))

    def receive_foreign(self, unverified: str, *, trust: TrustList,
                        now: int) -> CredentialInfo:
        """Check a credential from an issuer outside the network against the holder's copy of
        a verifier's ``trust`` list (:func:`ledger.foreign.receive_foreign`) and keep it. It has
        no ledger evidence: it is presented as a plain SD-JWT+KB (ADR 39)."""
        key = self._key_of(_bound_jwk_of(unverified))
        got = receive_foreign(unverified, trust=trust, holder_jwk=self.holder_jwk(key),
                              now=now)
        return self._keep(StoredCredential(got.credential_id, got.type, got.issuer,
                                           got.valid_from, got.valid_until, now,
                                           got.credential.to_bytes(), key))

    def _keep(self, stored: StoredCredential) -> CredentialInfo:
        """Add a checked credential and save, under the wallet's lock after taking in what
        another process saved since this one opened it (another `wallet receive`, say: both
        credentials are kept, ADR 68); WalletError if it is already in the wallet.

        The credential was checked against this wallet's holder keys: if another wallet was
        restored in its place meanwhile, it is refused (WalletChangedError) and nothing saved."""
        with lock(self.path):
            self._catch_up()
            if any(c.credential_id == stored.credential_id
                   for c in self._contents.credentials):
                raise WalletError(f"credential {stored.id[:16]}… is already in the wallet")
            self._save_locked(replace(self._contents,
                                      credentials=(*self._contents.credentials, stored)))
        return CredentialInfo.of(stored)

    def is_foreign(self, credential_id: str) -> bool:
        """Whether the credential came from outside the network (no ledger evidence)."""
        return isinstance(self._record(self._find(credential_id)), ForeignCredential)

    def leaf_indexes(self) -> dict[str, int]:
        """Credential id → the leaf index of its anchor (what a node needs for a new proof);
        credentials from outside the network have none and are left out."""
        out = {}
        for c in self._contents.credentials:
            record = self._record(c)
            if isinstance(record, Bundle):
                out[c.id] = record.leaf_index
        return out

    def refresh(self, proofs: Mapping[str, Sequence[bytes]], checkpoint: str, *,
                registry: Registry, now: int) -> dict[str, str | None]:
        """Prove credentials against a newer ``checkpoint``: ``proofs`` maps a credential id to
        its anchor's inclusion proof at that checkpoint's size.

        Each bundle with the new proof and checkpoint in place of its own is verified as on
        receipt (:mod:`wallet.verify`: a final checkpoint under ``registry``, the proof to its
        root) and kept only if it passes, and its checkpoint is not older than the one held
        while that one still checks out; the others stay as they were. Saves once. Returns
        each id given → None (refreshed) or the reason it was not. A checkpoint's co-signers are
        judged by the node keys valid now, so after a node-key rotation a wallet refreshes to
        keep its credentials presentable (ADR 21). Under the wallet's lock, after taking in what
        another process saved since this one opened it (a credential received meanwhile)."""
        with lock(self.path):  # what another process saved meanwhile is taken in first
            self._catch_up()
            return self._refresh_locked(proofs, checkpoint, registry=registry, now=now)

    def _refresh_locked(self, proofs: Mapping[str, Sequence[bytes]], checkpoint: str, *,
                        registry: Registry, now: int) -> dict[str, str | None]:
        kept = list(self._contents.credentials)
        unknown = sorted(set(proofs) - {c.id for c in kept})
        if unknown:
            raise PresentationError(f"no credential {unknown[0][:16]}… in this wallet")
        results: dict[str, str | None] = {}
        for i, c in enumerate(kept):
            if c.id not in proofs:
                continue
            record = self._record(c)
            if not isinstance(record, Bundle):
                results[c.id] = "issued outside the network: it has no ledger proof to refresh"
                continue
            old = record
            new = Bundle(old.anchor, old.leaf_index, tuple(proofs[c.id]), checkpoint,
                         old.sd_jwt)
            try:
                v = verify_bundle(new.to_bytes(), registry=registry,
                                  holder_jwk=self.holder_jwk(c.key), now=now)
            except LedgerError as e:
                results[c.id] = str(e)
                continue
            stale = self._older_than_held(old, new, registry, c.key, now)
            if stale is not None:
                results[c.id] = stale
                continue
            kept[i] = replace(c, bundle=v.bundle.to_bytes())
            results[c.id] = None
        if any(r is None for r in results.values()):
            self._save_locked(replace(self._contents, credentials=tuple(kept)))
        return results

    def _older_than_held(self, old: Bundle, new: Bundle, registry: Registry, key: int,
                         now: int) -> str | None:
        """Why ``new`` (verified) must not replace ``old``: its checkpoint is older than the
        one held, which is still final (a lagging or hostile node's; a verifier would be shown
        a staler ledger than the wallet had); None to take it. An older checkpoint is taken
        only where the one held no longer checks out (its co-signers' keys retired)."""
        held = SignedCheckpoint.from_text(old.checkpoint).checkpoint.size
        offered = SignedCheckpoint.from_text(new.checkpoint).checkpoint.size
        if offered >= held:
            return None
        try:
            verify_bundle(old.to_bytes(), registry=registry, holder_jwk=self.holder_jwk(key),
                          now=now)
        except LedgerError:
            return None
        return (f"the node's checkpoint (size {offered}) is older than the one it is proven "
                f"at (size {held}); kept as it was")

    def copies_to_remove(self, credential_id: str) -> tuple[str, ...]:
        """The credential and the copies issued with it (:meth:`copies` bound to other holder
        keys, with the same validity dates): not a renewal, nor a copy asked for later."""
        c = self._find(credential_id)
        return tuple(d.id for d in self._copies(c, None) if d is c or (
            d.key != c.key and (d.valid_from, d.valid_until) == (c.valid_from, c.valid_until)))

    def remove(self, credential_ids: Sequence[str]) -> None:
        """Take exactly these credentials (full ids) out of the wallet, saved under the
        wallet's lock after taking in what another process saved; WalletError, and nothing
        removed, if one is no longer there. The holder keys they were shown with stay counted
        as shown (a verifier knows them), and a backup made before still holds them."""
        gone = set(credential_ids)
        with lock(self.path):
            self._catch_up()
            missing = gone - {c.id for c in self._contents.credentials}
            if missing:
                raise WalletError(f"{len(missing)} of these credentials left the wallet "
                                  "meanwhile (another wallet process?); nothing was removed")
            self._save_locked(replace(self._contents, credentials=tuple(
                d for d in self._contents.credentials if d.id not in gone)))

    def list(self) -> list[CredentialInfo]:
        """Every credential, in the order received."""
        return [CredentialInfo.of(c) for c in self._contents.credentials]

    def info(self, credential_id: str) -> CredentialInfo:
        return CredentialInfo.of(self._find(credential_id))

    def show(self, credential_id: str) -> dict[str, Any]:
        """The credential's selectively disclosable claims with their values (own eyes only)."""
        return dict(_claims(self._record(self._find(credential_id)).sd_jwt))

    def preview(self, credential_id: str, request: Request) -> Disclosure:
        """What :meth:`present` will reveal for ``request``; raises if it cannot be met."""
        c = self._find(credential_id)
        if request.credential_type != c.type:
            raise PresentationError(f"the verifier asks for a {request.credential_type!r} "
                                    f"credential; {c.id[:16]}… is a {c.type!r}")
        names = list(_claims(self._record(c).sd_jwt))
        wanted = list(dict.fromkeys(request.claims))
        missing = [n for n in wanted if n not in names and n not in ALWAYS_VISIBLE]
        if missing:
            raise PresentationError(f"the credential has no claim named {missing}; nothing "
                                    f"was disclosed")
        chosen = tuple(n for n in wanted if n in names)
        public = ON_LEDGER_CLAIMS.get(c.type, frozenset())
        rest = [n for n in names if n not in chosen]
        return Disclosure(c.id, c.type, c.issuer, request.audience, request.nonce, chosen,
                          ALWAYS_VISIBLE, tuple(n for n in rest if n not in public),
                          tuple(n for n in rest if n in public))

    def present(self, credential_id: str, request: Request, *, now: int,
                exact: bool = False) -> bytes:
        """The presentation envelope for ``request``: only the requested claims, bound to its
        nonce and audience with a key-binding JWT signed by the credential's holder key at
        ``now``. It presents the credential's copy :meth:`copy_for` gives, chosen afresh under
        the wallet's lock after taking in what another process saved (:attr:`presented` says
        which), or with ``exact`` the credential itself. The wallet counts it as shown, saved
        before the envelope is returned; on read-only media it is given uncounted
        (:attr:`uncounted` says so), and any other failure to count it refuses it.

        A credential from outside the network has no ledger evidence: its presentation is the
        SD-JWT+KB itself, as ASCII bytes (``ledger verify --trust`` checks it)."""
        with lock(self.path, reading=True):
            self._catch_up()
            chosen = credential_id if exact else self.copy_for(credential_id,
                                                               request.audience, now)
            return self._present_locked(chosen, request, now)

    def _present_locked(self, credential_id: str, request: Request, now: int) -> bytes:
        """:meth:`present` of exactly ``credential_id``, the wallet's lock held."""
        stored = self._find(credential_id)
        preview = self.preview(stored.id, request)
        bundle = self._record(stored)
        try:
            kb = sdjwt.present(bundle.sd_jwt, disclose=preview.claims,
                               holder_key=self._holder(stored.key),
                               nonce=request.nonce, aud=request.audience, iat=now)
        except (LedgerError, ValueError) as e:
            raise PresentationError(f"cannot present {preview.credential_id[:16]}…: "
                                    f"{e}") from e
        disclosed = tuple(_claims(kb))
        if sorted(disclosed) != sorted(preview.claims):  # never more than the preview
            raise PresentationError("the presentation would disclose other claims than the "
                                    "preview; refusing")
        if isinstance(bundle, ForeignCredential):
            env = kb.encode("ascii")
        else:
            env = Envelope.from_bundle(bundle, kb).to_bytes()
            if len(env) > MAX_ENVELOPE:
                raise PresentationError(f"the envelope is {len(env)} bytes, over the "
                                        f"verifier's {MAX_ENVELOPE}-byte limit")
        pair = (stored.key, verifier_of(request.audience))
        shown_to = self._contents.shown_to
        if pair not in shown_to and len(shown_to) < MAX_SHOWN_TO:
            shown_to = (*shown_to, pair)
        try:
            self._save_locked(replace(self._contents, shown_to=shown_to, credentials=tuple(
                replace(c, shown=c.shown + 1) if c is stored else c
                for c in self._contents.credentials)))
            self.uncounted = None
        except WalletFileError as e:
            if not _read_only(e):
                raise  # a full disk, say: no envelope the wallet could not count
            self.uncounted = str(e)
        self.presented = stored.id
        return env

    def copies(self, credential_id: str, now: int | None = None) -> tuple[str, ...]:
        """The ids of the credential's copies in this wallet, itself first, then the newest
        first: those of the same issuer and type with the same claims (a batch issued for
        unlinkable presentations, ADR 22, or copies asked for later on other keys), each
        bound to its own holder key; with ``now``, only those valid then."""
        return tuple(d.id for d in self._copies(self._find(credential_id), now))

    def _copies(self, c: StoredCredential, now: int | None
                ) -> tuple[StoredCredential, ...]:
        mine = _claims(self._record(c).sd_jwt)
        others = sorted((d for d in self._contents.credentials
                         if d is not c and d.type == c.type and d.issuer == c.issuer
                         and (now is None or _valid(d, now))
                         and _claims(self._record(d).sd_jwt) == mine),
                        key=lambda d: -d.valid_from)
        return (c, *others)

    def seen_by(self, credential_id: str, audience: str) -> bool:
        """Whether the verifier ``audience`` was shown this credential's holder key before."""
        return (self._find(credential_id).key,
                verifier_of(audience)) in self._contents.shown_to

    def would_link(self, credential_id: str, audience: str) -> bool:
        """Whether presenting this credential to ``audience`` shows a holder key another
        verifier saw (one that saw it before learns nothing new)."""
        return self._spent(self._find(credential_id).key) and not self.seen_by(credential_id,
                                                                               audience)

    def _spent(self, key: int) -> bool:
        """Whether a presentation was made with holder key ``key`` (of any credential): a
        verifier then knows the key, and one who compares could link another presentation
        bound to it."""
        return (any(k == key for k, _ in self._contents.shown_to)
                or any(c.shown for c in self._contents.credentials if c.key == key))

    def copy_for(self, credential_id: str, audience: str | None = None,
                 now: int | None = None) -> str:
        """The copy to present to ``audience``: one bound to a key that verifier saw before
        (a key per verifier: it learns nothing new), else the credential itself while its key
        was never shown, else the newest copy bound to a key never shown, else the credential
        itself. Two verifiers who compare what they saw can link two presentations bound to
        one key (its signature, salts and key are the same for one copy); of copies bound to
        keys each shown to one verifier only, nothing. The keys are one budget for every type
        of credential: N keys keep N verifiers apart. With ``now``, only copies valid then
        are taken, and the credential itself, when not valid then, only where no copy is (an
        expired one named, while its renewal on another key was valid, was presented and
        refused by the verifier, its claims disclosed for nothing)."""
        c = self._find(credential_id)
        group = self._copies(c, now)
        if now is not None and not _valid(c, now):
            group = group[1:] or group
        if audience is not None:
            who = verifier_of(audience)
            for d in group:
                if (d.key, who) in self._contents.shown_to:
                    return d.id
        for d in group:  # c first (while valid)
            if not self._spent(d.key):
                return d.id
        return group[0].id

    def _fits(self, request: Request, now: int) -> tuple[StoredCredential, ...]:
        """The credentials in validity that can answer ``request``."""
        return tuple(c for c in self._contents.credentials
                     if c.type == request.credential_type and _valid(c, now)
                     and isinstance(self._record(c), Bundle))

    def _held(self, request: Request, now: int) -> tuple[StoredCredential, ...]:
        """:meth:`_fits`, or the refusal that the wallet holds none."""
        fits = self._fits(request, now)
        if not fits:
            raise PresentationError(f"the wallet holds no valid {request.credential_type!r} "
                                    "credential")
        return fits

    def pick(self, request: Request, now: int) -> str:
        """The id of the newest credential in validity that can answer ``request`` (one that
        starts within the verifiers' clock skew counts, as receiving and verifying it do: an
        issuer's clock a little ahead of the holder's; but only when none has started by the
        holder's clock, a verifier's clock may be behind), or its copy :meth:`copy_for`
        gives for the request's verifier."""
        fits = self._held(request, now)
        started = [c for c in fits if c.valid_from <= now]
        return self.copy_for(max(started or fits, key=lambda c: c.valid_from).id,
                             request.audience, now)

    def application(self, requests: Sequence[Request], *, now: int, dry: bool = False,
                    status: Callable[[str], StatusList | None] | None = None
                    ) -> tuple[dict[str, str], tuple[tuple[str, bytes], ...]]:
        """``wallet apply``: the holder key for the approval credential, and one envelope per
        request of an application (only the claims each request names), as (nonce, envelope)
        pairs; with ``dry``, the key alone (and :attr:`relinked`), nothing signed or counted.
        Every credential shown is bound to that one key (the node's proof that they are one
        holder's). For each request, the valid credentials that could answer it are grouped by
        key (the newest on each); among the keys all requests share, the one this node saw
        before, else one never shown, else the lowest. Chosen and presented under the wallet's
        lock, after taking in what another process saved. With ``status`` (a snapshot's
        verified lists, ``Snapshot.status_list``), a copy its list says revoked or suspended is
        left out: the node would refuse the application."""
        with lock(self.path, reading=True):
            if not dry:
                self._catch_up()
            key, by_key = self._application_key(requests, now, status)
            self.relinked = self._spent(key) and not all(
                (key, verifier_of(r.audience)) in self._contents.shown_to for r in requests)
            if dry:
                return self.holder_jwk(key), ()
            return self.holder_jwk(key), tuple(
                (r.nonce, self._present_locked(keys[key], r, now))
                for r, keys in zip(requests, by_key, strict=True))

    def shown_keys(self, audience: str) -> tuple[int, ...]:
        """The holder keys (indexes, lowest first) this wallet showed the verifier ``audience``
        names (an application there among them): the keys ``wallet apply --collect`` proves,
        so that the node learns no key it had not seen."""
        with lock(self.path, reading=True):
            self._catch_up()
            who = verifier_of(audience)
            return tuple(sorted({k for k, v in self._contents.shown_to if v == who}))

    def collect_proof(self, key: int, challenge: Mapping[str, Any], *, now: int) -> str:
        """A node's collect proof (``POST /v1/services/{service}/collect``): a compact JWS of
        the challenge's ``typ`` over its nonce, audience and service, signed by holder key
        ``key``."""
        return sdjwt.sign_jws({"typ": str(challenge["typ"])}, {
            "nonce": str(challenge["nonce"]), "aud": str(challenge["audience"]),
            "service": str(challenge["service"]), "iat": now}, self._holder(key))

    def _application_key(self, requests: Sequence[Request], now: int,
                         status: Callable[[str], StatusList | None] | None
                         ) -> tuple[int, _ByKey]:
        by_key: _ByKey = []
        for r in requests:
            newest: dict[int, StoredCredential] = {}
            usable = [c for c in self._held(r, now)
                      if status is None or not self._withdrawn(c, status)]
            if not usable:
                raise PresentationError(f"every valid {r.credential_type!r} credential this "
                                        "wallet holds is revoked or suspended, by the "
                                        "snapshot's status lists")
            for c in usable:
                if c.key not in newest or c.valid_from > newest[c.key].valid_from:
                    newest[c.key] = c
            by_key.append({k: c.id for k, c in newest.items()})
        common = set(by_key[0]).intersection(*by_key[1:]) if by_key else {0}
        if not common:
            # keys numbered from 1, as `wallet holder-key --copies N --out k.json` writes
            # k-1.json … k-N.json
            names = ", ".join(f"{r.credential_type} (key{'s' if len(k) > 1 else ''} "
                              f"{', '.join(str(n + 1) for n in sorted(k))})"
                              for r, k in zip(requests, by_key, strict=True))
            raise PresentationError(f"no holder key binds a copy of every credential this "
                                    f"application needs: {names}; the node takes them only "
                                    "bound to one key (ask for copies bound to the same keys: "
                                    "`wallet holder-key --copies N`)")
        seen_here = {k for k in common if all(
            (k, verifier_of(r.audience)) in self._contents.shown_to for r in requests)}
        key = min(common, key=lambda k: (k not in seen_here, self._spent(k), k))
        return key, by_key

    def _withdrawn(self, c: StoredCredential,
                   status: Callable[[str], StatusList | None]) -> bool:
        """Whether the status list says ``c`` is revoked or suspended (an undetermined status,
        a list the snapshot lacks, is not taken as withdrawn)."""
        record = self._record(c)
        try:
            claim = sdjwt.parse_jws_payload(record.sd_jwt.split("~", 1)[0]).get("status")
        except LedgerError:
            return False
        return check_status(claim, status).status in ("revoked", "suspended")

    def answer(self, requests: Sequence[Request], *, now: int) -> tuple[tuple[str, bytes], ...]:
        """:meth:`application`'s envelopes alone."""
        return self.application(requests, now=now)[1]

    # -- internals --------------------------------------------------------------------------
    def _find(self, credential_id: str) -> StoredCredential:
        prefix = credential_id.strip().lower()
        if len(prefix) < _MIN_PREFIX:
            raise CredentialIdError(f"give at least {_MIN_PREFIX} hex digits of the "
                                    f"credential id")
        hits = [c for c in self._contents.credentials if c.id.startswith(prefix)]
        if not hits:
            raise CredentialIdError(f"no credential with id {prefix!r} in this wallet")
        if len(hits) > 1:
            raise CredentialIdError(f"{prefix!r} matches {len(hits)} credentials; give more "
                                    f"digits")
        return hits[0]

    @staticmethod
    def _record(c: StoredCredential) -> Bundle | ForeignCredential:
        """The stored bundle, or the foreign credential (ADR 39)."""
        try:
            return Bundle.from_bytes(c.bundle)
        except LedgerError as e:
            try:
                return ForeignCredential.from_bytes(c.bundle)
            except LedgerError:
                raise WalletFileError(f"stored credential {c.id[:16]}… is damaged: {e}") from e


_ByKey = list[dict[int, str]]
"""Per request of an application: holder key → the id of the credential to show with it."""


def verifier_of(audience: str) -> str:
    """Who a request's audience names, as the wallet keeps keys apart: its origin
    (:func:`ledger.presentation.origin_of`), so that the paths of one verifier's pages (its
    desk, its applications) count as one verifier, and spelling one address two ways does not
    take two keys."""
    return origin_of(audience)


def _valid(c: StoredCredential, now: int) -> bool:
    """Within its validity at ``now``, allowing the verifiers' clock skew at its start and its
    end (as receiving and verifying it do: :func:`ledger.sdjwt.window_state`)."""
    return sdjwt.window_state(c.valid_from, c.valid_until, now) == "valid"


def _refuse_read_only(path: Path) -> None:
    """:class:`WalletFileError` (as read-only media, :func:`_read_only`) when the wallet file's
    owner took away its write permission: the file is replaced by renaming a new one over it,
    which the folder's permission allows, so a wallet the user made read-only came back
    writable (0600) after a save."""
    try:
        mode = path.stat().st_mode
    except OSError:
        return  # no file to keep as it is; the write says what is wrong
    if not mode & stat.S_IWUSR:
        raise WalletFileError(
            f"{path} is read-only (mode {stat.S_IMODE(mode):04o}); nothing was changed. To "
            f"change the wallet, make it writable first: chmod u+w {path}"
        ) from PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path))


def _read_only(e: WalletFileError) -> bool:
    """Whether a wallet that could not be written is on read-only media."""
    cause = e.__cause__
    return isinstance(cause, OSError) and cause.errno in (errno.EROFS, errno.EACCES,
                                                          errno.EPERM)


def _with_counts(contents: Contents, other_blob: bytes, passphrase: bytes) -> Contents | None:
    """``contents`` with each credential's ``shown`` raised to what the wallet in
    ``other_blob`` counted for it and the keys it showed added, or None when that changes
    nothing or the other wallet does not open with ``passphrase``."""
    try:
        other = open_sealed(other_blob, passphrase)[0]
    except WalletFileError:
        return None
    if other.holder_seed != contents.holder_seed:
        return None  # another wallet: its keys are not these
    seen = {c.credential_id: c.shown for c in other.credentials}
    creds = tuple(replace(c, shown=max(c.shown, seen.get(c.credential_id, 0)))
                  for c in contents.credentials)
    # the keys shown, also with credentials the backup does not hold
    shown_to = (*contents.shown_to, *(p for p in other.shown_to
                                      if p not in contents.shown_to))[:MAX_SHOWN_TO]
    if creds == contents.credentials and shown_to == contents.shown_to:
        return None
    return replace(contents, credentials=creds, shown_to=shown_to)


def _bound_jwk_of(sd_jwt: object) -> object:
    """The ``cnf.jwk`` an SD-JWT's issuer-signed payload names, NOT verified: only to pick the
    holder key that the checks then hold it to (None if it cannot be read)."""
    if not isinstance(sd_jwt, str):
        return None
    try:
        cnf = sdjwt.parse_jws_payload(sd_jwt.split("~", 1)[0], "issuer-signed JWT").get("cnf")
    except (LedgerError, AttributeError):
        return None
    return cnf.get("jwk") if isinstance(cnf, dict) else None


def _bound_jwk(unverified_bundle: bytes) -> object:
    try:
        return _bound_jwk_of(Bundle.from_bytes(unverified_bundle).sd_jwt)
    except LedgerError:
        return None


def beyond_rule(rule: Mapping[str, Any], request: Request) -> list[str] | None:
    """The claims ``request`` asks for that the registered ``rule`` does not need (with the
    claims its credential types imply, e.g. an approval's decision), sorted; ``[]`` when it
    asks for no more; ``None`` when the rule needs no credential of the request's type."""
    needs = {n["type"]: set(with_implied_claims(n["type"], n["claims"]))
             for n in rule["needs"]}
    if request.credential_type not in needs:
        return None
    return sorted(set(request.claims) - needs[request.credential_type])


def approval_claims(unverified_bundle: bytes, rule: Mapping[str, Any]) -> dict[str, Any]:
    """The claims of the approval credential in a node's answer to `wallet apply`, read, NOT
    verified (:meth:`Wallet.receive` of the same bytes verifies them); :class:`BundleRefused`
    unless it is an approval of ``rule``'s service issued by the agency that decides it.
    Another credential bound to the holder's key (one it holds, or held) verifies as well: it
    was kept, and the node's own words ("approved") said, as if it were the one applied for."""
    try:
        bundle = Bundle.from_bytes(unverified_bundle)
        anchor = Tx.from_bytes(bundle.anchor)
        claims = _claims(bundle.sd_jwt)
    except LedgerError as e:
        raise BundleRefused("bundle", str(e)) from e
    kind, issuer = (anchor.body["type"], anchor.body["issuer"]) if anchor.type == "issue" \
        else (None, None)
    if kind != "approval" or claims.get("service") != rule["service"] or \
            issuer != rule["agency"]:
        raise BundleRefused("approval", f"the node answered with a {kind!r} credential of "
                                        f"{issuer!r}, not an approval of {rule['service']!r} "
                                        f"by {rule['agency']!r}")
    return claims


def _keep_aside(path: Path, blob: bytes) -> Path:
    """Write ``blob`` beside ``path`` as ``<name>.replaced-<UTC time>[-n]``, never over a file."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    for n in range(100):
        kept = path.with_name(f"{path.name}.replaced-{stamp}" + (f"-{n}" if n else ""))
        try:
            write_atomic(kept, blob, 0o600, overwrite=False)
            return kept
        except FileExistsError:
            continue
    raise FileExistsError(f"too many copies named {path.name}.replaced-{stamp}")


def _read(path: Path, what: str) -> bytes:
    try:
        return read_at_most(path, MAX_FILE, f"the {what} file")
    except FileNotFoundError as e:
        raise WalletFileError(f"no {what} file at {path}") from e
    except OSError as e:
        raise WalletFileError(f"cannot read {what} file {path}: {e.strerror or e}") from e


def read_at_most(path: Path, limit: int, what: str) -> bytes:
    """The bytes of ``path``, refused (:class:`WalletError`) past ``limit``: read whole
    first, a file given by mistake (a disk image, ``/dev/zero``) took all the memory there
    was, and ended in a MemoryError traceback instead of a word on what was wrong."""
    with path.open("rb") as f:
        data = f.read(limit + 1)
    if len(data) > limit:
        raise WalletError(f"{what} {path} is over {limit:,} bytes: it is not one; check the "
                          "file given (nothing was changed)")
    return data


def _claims(serialized: str) -> dict[str, Any]:
    """Top-level claims disclosed in an SD-JWT (holder side: the issuer was checked on receipt).

    Only Disclosures whose digest the issuer-signed payload lists in ``_sd`` count.
    """
    try:
        parsed = sdjwt.parse(serialized)
        sd = parsed.payload.get("_sd", [])
        listed = set(sd) if isinstance(sd, list) else set()
        out: dict[str, Any] = {}
        # decoded as strictly as on receipt: what a node answers `wallet apply` is read here
        # before any check, and a disclosure nested thousands deep was a RecursionError
        for d, value in zip(parsed.disclosures, sdjwt.disclosure_values(parsed.disclosures),
                            strict=True):
            digest = base64.urlsafe_b64encode(hashlib.sha256(d.encode("ascii")).digest())
            if digest.rstrip(b"=").decode() not in listed:
                continue
            if len(value) == 3 and isinstance(value[1], str):
                out[value[1]] = value[2]
    except (LedgerError, ValueError) as e:
        raise WalletFileError(f"a stored credential cannot be read: {e}") from e
    return out
