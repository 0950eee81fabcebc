"""The network's own PKI: a CA and one certificate per agency (``cryptography``, ECDSA P-256).

One agency certificate serves etcd peer and client mTLS and the node's HTTPS (``serverAuth`` and
``clientAuth``; SANs ``127.0.0.1``, ``localhost`` and the agency id). Private keys are written
encrypted as the agencies' key files are (PKCS#8 DER sealed with an Argon2id-derived key,
:func:`ledger.keys.seal_secret`): the same passphrase protects both, so neither may be the cheaper
to guess (PEM's ``BestAvailableEncryption``, PBKDF2 at 2,048 rounds, is still read, ADR 46).
etcd cannot read an encrypted key, so :func:`unlock` writes a clear copy for the running processes
into a 0700 runtime folder (on ``/dev/shm`` when it exists, i.e. in memory) that :func:`lock`
removes at shutdown.

Layout of a PKI folder::

    ca.crt  ca.key               the network CA (key encrypted)
    <agency>.crt  <agency>.key   each agency's certificate and encrypted key
    crl.pem                      the CA's list of revoked certificates (ADR 48)
    operator.crt  operator.key   the operator's etcd client certificate (CN ``root``: etcd's
                                 administrator once its auth is on; ADR 48)
    superseded/<agency>-<serial>.crt   certificates ``renew`` replaced (valid until they expire)
    revoked/<agency>-<serial>.crt   certificates taken out of service

An agency's own copy needs ``ca.crt``, ``crl.pem`` and its own pair. etcd reads ``crl.pem`` on
every new connection (``--client-crl-file``, ``--peer-crl-file``), so a revocation copied there
shuts a removed agency's certificate out at once; nodes read it when they start.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import ipaddress
import os
import re
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from ledger.errors import KeyFileError, LedgerError
from ledger.files import lock_folder, read_capped, sync_folder, write_atomic
from ledger.keys import open_secret, seal_secret
from ledger.tx import is_identifier

__all__ = ["CRL", "OPERATOR", "CertInfo", "PkiError", "changing", "check_certificates",
           "check_hosts", "check_request", "create_pki", "ensure_crl", "ensure_operator_cert",
           "issue_agency_cert", "list_certificates", "lock", "make_request",
           "operator_credentials", "renew_agency_cert", "revoke_agency_cert",
           "revoked_only", "runtime_base", "seal_key_again", "sweep_stale_runtimes", "unlock"]

VALID_DAYS = 825
"""An agency's (and the operator's) certificate, at most (and never past the CA's end)."""
CA_VALID_DAYS = 3650
"""The network CA's certificate: ten years, so that agency certificates can be renewed for
their full time; `renew_ca` extends it with the same key (ADR 54)."""
WARN_DAYS = 30
"""A node's health is degraded this many days before its certificate (or the CA's) ends."""
UNREADABLE = "cannot read this agency's TLS certificates"
"""How :func:`certificate_problem` begins when it could not read the certificates or the
revocation list (missing, or caught while being copied in): worth reading again soon."""
CRL = "crl.pem"
CRL_FILE_MAX = 1 << 20
"""The most ``crl.pem`` is read: some 40 bytes for each certificate it revokes."""
REVOKED = "revoked"
SUPERSEDED = "superseded"  # certificates renew replaced, still valid until they expire
OPERATOR = "operator"  # operator.crt / operator.key
ETCD_ROOT = "root"  # etcd takes a client certificate's CN as its user; root administers it
# ids whose files or CN would be the CA's, the list's, the operator's or etcd's root
_OLD_CA = "ca."
"""How ``superseded/`` names a CA certificate ``renew_ca`` replaced (``ca.<serial>.crt``)."""
_RESERVED = frozenset({"ca", "crl", OPERATOR, ETCD_ROOT, REVOKED, SUPERSEDED})


class PkiError(LedgerError):
    """A PKI folder that is missing a file, holds a bad one, or cannot be unlocked."""


def _write(path: Path, data: bytes, mode: int) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


@contextlib.contextmanager
def changing(folder: Path, waiting: Callable[[], None] | None = None) -> Iterator[None]:
    """The PKI folder held by one command that changes it (:func:`~ledger.files.lock_folder`).
    Two at once each read ``crl.pem`` or "no certificate yet" and wrote after the other: a
    revocation dropped from the list, an agency's key paired with the other run's
    certificate. The second waits (``waiting`` says so) and then reads what the first wrote.
    A path that is no folder is left to the command to refuse."""
    try:
        fd = lock_folder(folder, waiting)
    except (FileNotFoundError, NotADirectoryError):
        yield
        return
    try:
        yield
    finally:
        os.close(fd)


def _key_bytes(key: ec.EllipticCurvePrivateKey, passphrase: bytes | None) -> bytes:
    """The key sealed with ``passphrase``; without one, clear PEM (the runtime copy)."""
    if not passphrase:
        return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                 serialization.NoEncryption())
    der = key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    return seal_secret(der, passphrase, _WHAT)


_WHAT = "tls-key"


def resealed_key(path: Path, passphrase: bytes, new_passphrase: bytes, *,
                 certificate: Path | None = None) -> bytes:
    """The agency key in ``path`` (sealed with ``passphrase``), sealed again with
    ``new_passphrase``: the copy the PKI's keeper gives the agency, for its own passphrase.
    :class:`PkiError` if it does not open, or is not the key of ``certificate`` (the agency's,
    :func:`seal_key_again`)."""
    return seal_key_again(path, passphrase, certificate=certificate)(new_passphrase)


def seal_key_again(path: Path, passphrase: bytes, *, certificate: Path | None = None
                   ) -> Callable[[bytes], bytes]:
    """The TLS key in ``path`` (sealed, or PEM from before ADR 46) opened with ``passphrase``: a
    function that seals it as key files are now under a new passphrase (``seal-again``, which
    writes its bytes). :class:`PkiError` if it does not open, or, given ``certificate``, is
    not that certificate's key: a sealed TLS key does not say whose it is, so another agency's
    key put in its place (a copy, a link) was handed to the agency (helper round 40S)."""
    key = _load_key(path, passphrase)
    if certificate is not None and (_spki(key.public_key())
                                    != _spki(_certificate(certificate).public_key())):
        raise PkiError(f"{path} is not the key of {certificate} (another key was put in its "
                       "place); the keeper makes the agency a new key and certificate "
                       "(`ledger-node pki revoke`, then `pki add`)")

    def seal(new: bytes) -> bytes:
        if not new:
            raise PkiError("an empty passphrase would leave the key clear")
        return _key_bytes(key, new)
    return seal


def _load_key(path: Path, passphrase: bytes) -> ec.EllipticCurvePrivateKey:
    try:
        blob = read_capped(path)
    except FileNotFoundError as e:
        raise PkiError(f"no key file {path}") from e
    except OSError as e:
        raise PkiError(f"cannot read {path}: {e.strerror or e}") from e
    try:
        if blob.startswith(b"-----BEGIN"):  # written before ADR 46
            key = serialization.load_pem_private_key(blob, passphrase)
        else:
            key = serialization.load_der_private_key(
                open_secret(blob, passphrase, _WHAT, path), None)
    except KeyFileError as e:
        raise PkiError(str(e)) from e
    except (ValueError, TypeError) as e:
        raise PkiError(f"cannot decrypt {path}: wrong passphrase or not a key file") from e
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise PkiError(f"{path} is not an EC private key")
    return key


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "credledger"),
                      x509.NameAttribute(NameOID.COMMON_NAME, common)])


def create_pki(folder: Path, network: str, agencies: Iterable[str], passphrase: bytes, *,
               now: _dt.datetime, hosts: Mapping[str, Sequence[str]] | None = None) -> None:
    """Create ``folder`` with a new CA for ``network`` and a certificate for each agency
    (``hosts``: the host names or addresses each agency's certificate names, beside
    127.0.0.1, localhost and the agency id)."""
    if folder.exists() and any(folder.iterdir()):
        raise PkiError(f"{folder} is not empty: a new PKI needs a new folder")
    if not passphrase:
        raise PkiError("an empty passphrase cannot protect the CA key")
    if not is_identifier(network):
        raise PkiError(f"network id {network!r}: a ledger's network id is 1 to 64 lower-case "
                       "letters, digits, '.', '_' and '-', starting with a letter or digit")
    agencies = list(agencies)
    for agency in agencies:
        _check_id(agency)
    twice = sorted({a for a in agencies if agencies.count(a) > 1})
    if twice:
        raise PkiError(f"agency {twice[0]!r} is named twice")
    unknown = sorted(set(hosts or {}) - set(agencies))
    if unknown:
        raise PkiError(f"hosts are given for {unknown[0]!r}, which is not an agency listed")
    for agency in agencies:
        _sans(agency, (hosts or {}).get(agency, ()))  # every host checked before any file
    # Built in a hidden folder beside it and renamed into place whole: one interrupted (a
    # Ctrl-C, a full disk) left a half-made PKI that a rerun refused as "not empty" (ADR 71).
    if not folder.parent.is_dir():  # a mistyped path: its folders are not made (ADR 78 Left)
        raise PkiError(f"no folder {folder.parent} to create the PKI {folder} in")
    tmp = folder.with_name(f".{folder.name}.creating-{os.urandom(4).hex()}")
    tmp.mkdir(mode=0o700)
    try:
        key = ec.generate_private_key(ec.SECP256R1())
        # a common name holds 64 characters at most: a network id of 55 or more is the name
        common = f"{network} ledger CA"
        cert = _ca_cert(key, _name(common if len(common) <= _MAX_COMMON else network), now)
        # durable before the folder is renamed into place, as every other file in it (a power
        # cut could leave a PKI "created" with an empty ca.key: helper round 28D)
        write_atomic(tmp / "ca.key", _key_bytes(key, passphrase), 0o600)
        write_atomic(tmp / "ca.crt", cert.public_bytes(serialization.Encoding.PEM), 0o644)
        _write_crl(tmp, cert, key, [], now)
        _issue_operator_cert(tmp, cert, key, passphrase, now)
        for agency in agencies:
            issue_agency_cert(tmp, agency, passphrase, now=now,
                              hosts=(hosts or {}).get(agency, ()))
        if folder.exists():
            folder.rmdir()  # empty (checked above): an OSError if something came meanwhile
        os.rename(tmp, folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    sync_folder(folder.parent)  # the rename itself


def _ca_cert(key: ec.EllipticCurvePrivateKey, name: x509.Name,
             now: _dt.datetime) -> x509.Certificate:
    return (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - _dt.timedelta(minutes=5))
            .not_valid_after(now + _dt.timedelta(days=CA_VALID_DAYS))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            # key identifiers: OpenSSL's strict checks (Python 3.13's default) require them
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                           critical=False)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True,
                                         crl_sign=True, content_commitment=False,
                                         key_encipherment=False, data_encipherment=False,
                                         key_agreement=False, encipher_only=False,
                                         decipher_only=False), critical=True)
            .sign(key, hashes.SHA256()))


def renew_ca(folder: Path, passphrase: bytes, *, now: _dt.datetime) -> x509.Certificate:
    """Replace ``ca.crt`` with a certificate of the same CA (same name, same key) valid for
    :data:`CA_VALID_DAYS` from ``now``: every certificate the CA signed verifies under either,
    so agencies change to the new ``ca.crt`` (and ``crl.pem``) one at a time, each at its next
    restart, and
    renewed agency certificates get their full time again. The old one is kept in
    ``superseded/``; the revocation list (same entries) and the operator's certificate are
    made anew to the new end. (A stolen CA key needs a new PKI; this only moves the CA's
    end.)"""
    ca_cert, ca_key = _ca(folder, passphrase)
    cert = _ca_cert(ca_key, ca_cert.subject, now)
    (folder / SUPERSEDED).mkdir(exist_ok=True, mode=0o700)
    # "ca." and a serial: no agency's file name (ids have no '.') can be taken for it
    shutil.copyfile(folder / "ca.crt",
                    folder / SUPERSEDED / f"{_OLD_CA}{ca_cert.serial_number:x}.crt")
    crl = _read_crl(folder, ca_cert)
    # the revocation list's next update was the old end (OpenSSL refuses a CRL past it), and
    # the operator's certificate ended with the old CA too; both verify under the old and the
    # new ca.crt, which is written last: a run stopped midway is repaired by running it again
    _write_crl(folder, cert, ca_key, [] if crl is None else list(crl), now)
    _issue_operator_cert(folder, cert, ca_key, passphrase, now)
    write_atomic(folder / "ca.crt", cert.public_bytes(serialization.Encoding.PEM), 0o644)
    return cert


def issue_agency_cert(folder: Path, agency: str, passphrase: bytes, *,
                      now: _dt.datetime, hosts: Sequence[str] = (),
                      csr: bytes | None = None) -> x509.Certificate:
    """Add ``<agency>.crt`` / ``<agency>.key`` signed by the CA in ``folder``, naming
    ``hosts`` too (the host names or addresses its node and etcd member are reached at).
    With ``csr`` (the agency's signing request, PEM, :func:`make_request`) the certificate
    is for the request's key, which the agency keeps: no ``<agency>.key`` is written."""
    _check_id(agency)
    san = _sans(agency, hosts)
    public = None if csr is None else check_request(csr, agency)
    if (folder / f"{agency}.crt").exists():
        raise PkiError(f"{folder} already has a certificate for {agency!r}")
    if public is not None:
        _refuse_taken_key(folder, public, agency)
    ca_cert, ca_key = _ca(folder, passphrase)
    if public is not None:
        # a key an `add` stopped before its certificate left is not this one's: gone
        left = _keepers_key(folder, agency, passphrase)
        cert = _agency_leaf(ca_cert, ca_key, agency, public, now, san)
        left.unlink(missing_ok=True)
        write_atomic(folder / f"{agency}.crt", cert.public_bytes(serialization.Encoding.PEM),
                     0o644, overwrite=False)
        return cert
    # a key already there without a certificate was left by a run stopped between the two
    # (no one was given it): replaced, so the rerun is taken; unless the keeper's passphrase
    # does not open it: the agency's own (its request made here), lost if written over
    _keepers_key(folder, agency, passphrase)
    key, cert = _agency_cert(ca_cert, ca_key, agency, now, san)
    # each whole, the key first
    write_atomic(folder / f"{agency}.key", _key_bytes(key, passphrase), 0o600)
    write_atomic(folder / f"{agency}.crt", cert.public_bytes(serialization.Encoding.PEM), 0o644,
                 overwrite=False)
    return cert


_HOST = re.compile(r"(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)*"
                   r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?")


def _sans(agency: str, hosts: Iterable[str]) -> x509.SubjectAlternativeName:
    """The names an agency's certificate is valid for: 127.0.0.1, localhost, the agency id and
    ``hosts`` (DNS names or IP addresses; peers and etcd check the one they connect to)."""
    names: list[x509.GeneralName] = [x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                                     x509.DNSName("localhost"), x509.DNSName(agency)]
    for host in hosts:
        try:
            name: x509.GeneralName = x509.IPAddress(ipaddress.ip_address(host))
        except ValueError:
            if not _HOST.fullmatch(host):
                raise PkiError(f"host {host[:80]!r} is neither an IP address nor a host name "
                               "(letters, digits, '-' and dots, lower case)") from None
            name = x509.DNSName(host)
        if name not in names:
            names.append(name)
    return x509.SubjectAlternativeName(names)


def _ca(folder: Path, passphrase: bytes) -> tuple[x509.Certificate,
                                                  ec.EllipticCurvePrivateKey]:
    """The CA's certificate and key; only the network's operator holds ``ca.key``."""
    ca_cert = _certificate(folder / "ca.crt")
    if not (folder / "ca.key").exists():
        raise PkiError(f"{folder} holds no CA key (ca.key): certificates are issued and "
                       "revoked where the network's CA is kept")
    ca_key = _load_key(folder / "ca.key", passphrase)
    if _spki(ca_key.public_key()) != _spki(ca_cert.public_key()):
        raise PkiError(f"{folder / 'ca.key'} is not the key of {folder / 'ca.crt'}")
    if read_capped(folder / "ca.key").startswith(b"-----BEGIN"):
        # A CA key written before ADR 46: PEM with PBKDF2 at 2,048 rounds, under the
        # passphrase of the Argon2id key files, the cheap way to guess it. No command rewrote
        # it (renew-ca keeps the key file): sealed as key files are, once it has opened.
        write_atomic(folder / "ca.key", _key_bytes(ca_key, passphrase), 0o600)
    return ca_cert, ca_key


def _spki(key: object) -> bytes:
    if not isinstance(key, ec.EllipticCurvePublicKey):
        return b""
    return key.public_bytes(serialization.Encoding.DER,
                            serialization.PublicFormat.SubjectPublicKeyInfo)


def _agency_cert(ca_cert: x509.Certificate, ca_key: ec.EllipticCurvePrivateKey, agency: str,
                 now: _dt.datetime, san: x509.SubjectAlternativeName
                 ) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    return key, _agency_leaf(ca_cert, ca_key, agency, key.public_key(), now, san)


def _agency_leaf(ca_cert: x509.Certificate, ca_key: ec.EllipticCurvePrivateKey, agency: str,
                 public: ec.EllipticCurvePublicKey, now: _dt.datetime,
                 san: x509.SubjectAlternativeName) -> x509.Certificate:
    """An agency's certificate for ``public``: its usages, for VALID_DAYS."""
    # never past the CA: a certificate the CA outlives no one could check
    until = min(now + _dt.timedelta(days=VALID_DAYS), ca_cert.not_valid_after_utc)
    return _sign_leaf(ca_cert, ca_key, agency, public, now, until, _AGENCY_USAGES, san)


_AGENCY_USAGES = [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
CSR_MAX = 16 * 1024
"""The most of a certificate signing request read (one is under 1 kB)."""


def make_request(folder: Path, agency: str, passphrase: bytes) -> Path:
    """A new TLS key for ``agency``, sealed with ``passphrase`` as ``<agency>.key`` in
    ``folder`` (the agency's own PKI folder), and its certificate signing request
    ``<agency>.csr`` (PEM, CN the agency id) beside it, for the PKI's keeper to sign
    (:func:`issue_agency_cert` with ``csr``): the key never leaves the agency. Neither file
    is written over. Returns the request's path."""
    _check_id(agency)
    if not passphrase:
        raise PkiError("an empty passphrase would leave the key clear")
    key_path, csr_path = folder / f"{agency}.key", folder / f"{agency}.csr"
    for path in (key_path, csr_path):
        if path.exists():
            raise PkiError(f"{path} exists (nothing was written; a request made before is in "
                           f"{csr_path}, its key in {key_path})")
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (x509.CertificateSigningRequestBuilder().subject_name(_name(agency))
           .sign(key, hashes.SHA256()))
    write_atomic(key_path, _key_bytes(key, passphrase), 0o600, overwrite=False)
    try:
        write_atomic(csr_path, csr.public_bytes(serialization.Encoding.PEM), 0o644,
                     overwrite=False)
    except BaseException:
        key_path.unlink(missing_ok=True)  # this run's key, which no request names
        raise
    return csr_path


_REQUEST_HASHES = frozenset({"sha224", "sha256", "sha384", "sha512",
                             "sha3-224", "sha3-256", "sha3-384", "sha3-512"})


def check_request(pem: bytes, agency: str) -> ec.EllipticCurvePublicKey:
    """The public key of the signing request ``pem`` for ``agency``: a P-256 key, the request
    signed with it and naming ``agency``; else :class:`PkiError`. Only the key is taken from
    it: the certificate's name, hosts, usages and end are the PKI's."""
    if pem.count(b"-----BEGIN") > 1:  # the keeper would review one and sign another
        raise PkiError("the file holds two signing requests (or more PEM blocks): give the "
                       "agency's one request alone")
    try:
        csr = x509.load_pem_x509_csr(pem)
        names = csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    except (ValueError, TypeError, x509.UnsupportedGeneralNameType) as e:
        raise PkiError("the signing request is no PEM certificate signing request (make it "
                       "with `ledger-node pki request`)") from e
    try:
        public = csr.public_key()
        hashed = csr.signature_hash_algorithm
        signed = csr.is_signature_valid
    except (UnsupportedAlgorithm, ValueError) as e:  # a key or curve the library lacks (SM2)
        raise PkiError("the signing request's key is not a P-256 (secp256r1) EC key, as the "
                       "network's are") from e
    if hashed is not None and hashed.name not in _REQUEST_HASHES:  # (its signature is not
        # checked: the library verifies none over SHA-1, which was "does not verify")
        raise PkiError(f"the signing request is signed with {hashed.name.upper()}, a hash too "
                       "weak to take: the agency makes it again with SHA-256 (`ledger-node pki "
                       "request`, or openssl req -sha256)")
    if not signed:
        raise PkiError("the signing request's signature does not verify under its key")
    if not isinstance(public, ec.EllipticCurvePublicKey) or public.curve.name != "secp256r1":
        raise PkiError("the signing request's key is not a P-256 (secp256r1) EC key, as the "
                       "network's are")
    if [str(n.value) for n in names] != [agency]:
        said = ", ".join(_shown(str(n.value)) for n in names[:3])
        raise PkiError(f"the signing request is not {agency}'s: it names "
                       f"{said + (', …' if len(names) > 3 else '') or 'no agency'}")
    return public


def _keepers_key(folder: Path, agency: str, passphrase: bytes) -> Path:
    """``<agency>.key`` in the PKI ``folder``, which a certificate for the agency's own key
    replaces: a :class:`PkiError` unless it is missing or the keeper's ``passphrase`` opens
    it. Any other key there is the agency's own (its request made in the PKI folder), never
    deleted."""
    path = folder / f"{agency}.key"
    if path.exists():
        try:
            _load_key(path, passphrase)
        except PkiError as e:
            raise PkiError(f"{path} is a key the keeper's passphrase does not open (the "
                           "agency's own, its request made in the PKI folder?): move it and "
                           "its request to the agency's own folder first, and certify the "
                           "request with --csr; nothing was written") from e
    return path


def _refuse_taken_key(folder: Path, public: ec.EllipticCurvePublicKey, agency: str) -> None:
    """A :class:`PkiError` when ``public`` is the key of a certificate the PKI in ``folder``
    revoked (kept in ``revoked/``): a stolen key's request, given again, is certified by no
    ``add`` or ``renew``, for its agency or another; or the key of another's certificate
    (another agency's, current or superseded, the CA's or the operator's): each agency's key
    is its own, so a request of one agency's key in another's name is not certified."""
    mine = _spki(public)
    for path in sorted((folder / REVOKED).glob("*.crt")):
        if _spki(_certificate(path).public_key()) == mine:
            raise PkiError(f"the signing request's key is the key of a revoked certificate "
                           f"({path.name}): the agency makes a new key and request "
                           "(`ledger-node pki request` into a new folder)")
    for path in sorted([*folder.glob("*.crt"), *(folder / SUPERSEDED).glob("*.crt")]):
        name = path.name.removesuffix(".crt")
        owner = ("the CA" if name == "ca" or name.startswith(_OLD_CA) else
                 name if path.parent == folder else name.rpartition("-")[0])
        if owner != agency and _spki(_certificate(path).public_key()) == mine:
            raise PkiError(f"the signing request's key is the key of {owner}'s certificate "
                           f"({path.name}): each agency's key is its own; the agency makes a "
                           "new key and request (`ledger-node pki request` into a new folder)")


def _shown(text: str, limit: int = 40) -> str:
    """``repr`` of a name from outside (a request's), cut before it is quoted."""
    return repr(text if len(text) <= limit else text[:limit] + "…")


def _leaf_cert(ca_cert: x509.Certificate, ca_key: ec.EllipticCurvePrivateKey, common: str,
               now: _dt.datetime, until: _dt.datetime, usages: list[x509.ObjectIdentifier],
               san: x509.SubjectAlternativeName | None = None
               ) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    """A new key and a certificate for it, signed by the CA, with CN ``common``."""
    key = ec.generate_private_key(ec.SECP256R1())
    return key, _sign_leaf(ca_cert, ca_key, common, key.public_key(), now, until, usages, san)


def _sign_leaf(ca_cert: x509.Certificate, ca_key: ec.EllipticCurvePrivateKey, common: str,
               public: ec.EllipticCurvePublicKey, now: _dt.datetime, until: _dt.datetime,
               usages: list[x509.ObjectIdentifier],
               san: x509.SubjectAlternativeName | None = None) -> x509.Certificate:
    """A certificate for ``public``, signed by the CA, with CN ``common``."""
    if now >= ca_cert.not_valid_after_utc:
        raise PkiError(f"the network CA expired on {ca_cert.not_valid_after_utc:%Y-%m-%d}: "
                       "renew it first (`ledger-node pki renew-ca`, same key), then copy the "
                       "new ca.crt to every agency")
    builder = (x509.CertificateBuilder().subject_name(_name(common))
               .issuer_name(ca_cert.subject).public_key(public)
               .serial_number(x509.random_serial_number())
               .not_valid_before(now - _dt.timedelta(minutes=5)).not_valid_after(until)
               .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
               .add_extension(x509.SubjectKeyIdentifier.from_public_key(public),
                              critical=False)
               .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                   ca_key.public_key()), critical=False))
    if san is not None:
        builder = builder.add_extension(san, critical=False)
    return (builder.add_extension(x509.ExtendedKeyUsage(usages), critical=False)
            .sign(ca_key, hashes.SHA256()))


def _replace_pair(folder: Path, name: str, key: ec.EllipticCurvePrivateKey,
                  cert: x509.Certificate, passphrase: bytes) -> None:
    """Write ``<name>.key`` (sealed) and ``<name>.crt``, each whole, in place of any before;
    the key first: a stop in between leaves a pair that unlock names as mismatched."""
    write_atomic(folder / f"{name}.key", _key_bytes(key, passphrase), 0o600)
    write_atomic(folder / f"{name}.crt", cert.public_bytes(serialization.Encoding.PEM), 0o644)


def renew_agency_cert(folder: Path, agency: str, passphrase: bytes, *,
                      now: _dt.datetime, hosts: Sequence[str] = (),
                      csr: bytes | None = None) -> x509.Certificate:
    """Replace ``<agency>.crt`` / ``<agency>.key`` with a new key and certificate. The old
    certificate stays valid until it expires (processes running with it keep working until
    they restart) and is kept in ``superseded/``, so a later revocation of the agency revokes
    it too. A stolen key needs ``revoke`` and ``add``, not this. The new certificate names
    the hosts the old one did, and ``hosts``. With ``csr`` (the agency's signing request,
    checked as :func:`issue_agency_cert` checks it) the certificate is for the request's key,
    which the agency keeps: no key is made, and a ``<agency>.key`` made here before is
    removed, as it is not the new certificate's. Returns the new certificate."""
    _check_id(agency)
    public = None if csr is None else check_request(csr, agency)
    if not (folder / f"{agency}.crt").exists() and _kept(folder / REVOKED, agency):
        raise PkiError(f"{agency}'s certificate is revoked: issue a new one with "
                       "`ledger-node pki add`")
    old = _certificate(folder / f"{agency}.crt")
    if public is not None:
        _refuse_taken_key(folder, public, agency)
    ca_cert, ca_key = _ca(folder, passphrase)
    if old.serial_number in _revoked_serials(folder, ca_cert):
        raise PkiError(f"{agency}'s certificate is revoked: issue a new one with "
                       "`ledger-node pki add`")
    if public is None and not (folder / f"{agency}.key").exists():  # a key made here is
        # not the one its node opens: the agency keeps its own
        raise PkiError(f"{agency} keeps its own TLS key (no {agency}.key in {folder}: its "
                       "certificate is for the key of its signing request): renew with --csr "
                       f"and the agency's request (`ledger-node pki request --agency {agency}` "
                       "makes one)")
    try:
        kept = [str(n.value) for n in old.extensions.get_extension_for_class(
            x509.SubjectAlternativeName).value]
    except x509.ExtensionNotFound:
        kept = []
    san = _sans(agency, [*kept, *hosts])
    # before anything is written: a key the keeper's passphrase does not open is the
    # agency's own, never written over (without --csr) nor removed (with it)
    left = _keepers_key(folder, agency, passphrase)
    if public is not None:
        cert = _agency_leaf(ca_cert, ca_key, agency, public, now, san)
    else:
        key, cert = _agency_cert(ca_cert, ca_key, agency, now, san)
    (folder / SUPERSEDED).mkdir(exist_ok=True, mode=0o700)
    shutil.copyfile(folder / f"{agency}.crt",
                    folder / SUPERSEDED / f"{agency}-{old.serial_number:x}.crt")
    if public is None:
        _replace_pair(folder, agency, key, cert, passphrase)
        return cert
    # the key made here, if any, is the old certificate's: gone first, so no stop leaves it
    # beside a certificate it does not match (the agency's own copy serves the old one)
    left.unlink(missing_ok=True)
    write_atomic(folder / f"{agency}.crt", cert.public_bytes(serialization.Encoding.PEM),
                 0o644)
    return cert


def revoke_agency_cert(folder: Path, agency: str, passphrase: bytes, *,
                       now: _dt.datetime) -> x509.Certificate:
    """Put ``<agency>.crt``, and every certificate of the agency ``renew`` superseded, on the
    CA's revocation list (``crl.pem``) and move them to ``revoked/``; the key is deleted.
    Returns the current certificate.

    Copy the new ``crl.pem`` to every agency's PKI folder: etcd members refuse the
    certificates on their next connection, nodes once they restart."""
    _check_id(agency)
    ca_cert, ca_key = _ca(folder, passphrase)
    if not (folder / f"{agency}.crt").exists():
        raise PkiError(f"{agency} has no certificate in {folder}" + (
            ": it was revoked already" if _kept(folder / REVOKED, agency)
            else " (is the agency id right?)"))
    cert = _certificate(folder / f"{agency}.crt")
    older = _kept(folder / SUPERSEDED, agency)
    crl = _read_crl(folder, ca_cert)
    entries = [] if crl is None else list(crl)
    listed = {e.serial_number for e in entries}
    for c in [cert, *(_certificate(path) for path in older)]:
        if c.serial_number not in listed and c.not_valid_after_utc > now:
            entries.append(x509.RevokedCertificateBuilder().serial_number(c.serial_number)
                           .revocation_date(now).build())
            listed.add(c.serial_number)
    _write_crl(folder, ca_cert, ca_key, entries, now)
    (folder / REVOKED).mkdir(exist_ok=True, mode=0o700)
    for path in older:
        os.replace(path, folder / REVOKED / path.name)
    os.replace(folder / f"{agency}.crt", folder / REVOKED / f"{agency}-{cert.serial_number:x}.crt")
    (folder / f"{agency}.key").unlink(missing_ok=True)
    return cert


def _kept(where: Path, agency: str) -> list[Path]:
    """``<agency>-<serial hex>.crt`` files in ``where``: this agency's only (ids may hold
    '-', so "city" must not take "city-water"'s; a serial is hex, without '-')."""
    return sorted(p for p in where.glob("*.crt")
                  if p.name.removesuffix(".crt").rpartition("-")[0] == agency)


def ensure_crl(folder: Path, passphrase: bytes, *, now: _dt.datetime) -> Path:
    """``crl.pem`` in ``folder``, written empty if a PKI from before ADR 48 has none (needs
    the CA key)."""
    path = folder / CRL
    if not path.exists():
        ca_cert, ca_key = _ca(folder, passphrase)
        _write_crl(folder, ca_cert, ca_key, [], now)
    return path


def _write_crl(folder: Path, ca_cert: x509.Certificate, ca_key: ec.EllipticCurvePrivateKey,
               entries: list[x509.RevokedCertificate], now: _dt.datetime) -> None:
    old = _read_crl(folder, ca_cert) if (folder / CRL).exists() else None
    number = 1
    if old is not None:
        with contextlib.suppress(x509.ExtensionNotFound):
            number = old.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number + 1
    # valid as long as the CA: OpenSSL refuses a CRL past its next update, and no one
    # re-signs it on a timer here (a revocation re-signs it).
    builder = (x509.CertificateRevocationListBuilder().issuer_name(ca_cert.subject)
               .last_update(now - _dt.timedelta(minutes=5))
               .next_update(max(ca_cert.not_valid_after_utc, now + _dt.timedelta(days=1)))
               .add_extension(x509.CRLNumber(number), critical=False))
    for entry in entries:
        builder = builder.add_revoked_certificate(entry)
    crl = builder.sign(ca_key, hashes.SHA256())
    write_atomic(folder / CRL, crl.public_bytes(serialization.Encoding.PEM), 0o644)


def _read_crl(folder: Path, ca_cert: x509.Certificate) -> x509.CertificateRevocationList | None:
    """``crl.pem`` checked against the CA; None when the folder has none (before ADR 48)."""
    path = folder / CRL
    try:
        crl = x509.load_pem_x509_crl(read_capped(path, CRL_FILE_MAX))
    except FileNotFoundError:
        return None
    except OSError as e:
        raise PkiError(f"cannot read {path}: {e.strerror or e}") from e
    except ValueError as e:
        raise PkiError(f"{path} is not a PEM certificate revocation list: {e}") from e
    ca_public = ca_cert.public_key()
    if crl.issuer != ca_cert.subject or not isinstance(ca_public, ec.EllipticCurvePublicKey) \
            or not crl.is_signature_valid(ca_public):
        raise PkiError(f"{path} is not signed by {folder / 'ca.crt'}")
    return crl


def _revoked_serials(folder: Path, ca_cert: x509.Certificate) -> set[int]:
    crl = _read_crl(folder, ca_cert)
    return set() if crl is None else {e.serial_number for e in crl}


@dataclass(frozen=True, slots=True)
class CertInfo:
    agency: str
    serial: int
    not_after: _dt.datetime
    revoked: bool
    superseded: bool = False  # replaced by ``renew``, valid until it expires


def list_certificates(folder: Path) -> list[CertInfo]:
    """The CA's certificate (named ``ca``), the operator's (``operator``), then every agency
    certificate in ``folder``: current, superseded, revoked. An agency's certificate never
    outlives the CA's: the CA's end is the network's."""
    ca = _certificate(folder / "ca.crt")
    revoked = _revoked_serials(folder, ca)
    out = [CertInfo("ca", ca.serial_number, ca.not_valid_after_utc, False)]
    if (folder / f"{OPERATOR}.crt").exists():
        op = _certificate(folder / f"{OPERATOR}.crt")
        out.append(CertInfo(OPERATOR, op.serial_number, op.not_valid_after_utc,
                            op.serial_number in revoked))
    for path in [*sorted(folder.glob("*.crt")), *sorted((folder / SUPERSEDED).glob("*.crt")),
                 *sorted((folder / REVOKED).glob("*.crt"))]:
        if path.name in ("ca.crt", f"{OPERATOR}.crt") or path.name.startswith(_OLD_CA):
            continue
        cert = _certificate(path)
        name = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
        out.append(CertInfo(str(name), cert.serial_number, cert.not_valid_after_utc,
                            cert.serial_number in revoked, path.parent.name == SUPERSEDED))
    return out


def revoked_only(certs: Iterable[CertInfo]) -> set[str]:
    """The agencies every certificate of which in ``certs`` (:func:`list_certificates`) is
    revoked: taken out (``ledger-node pki revoke``)."""
    held: dict[str, bool] = {}
    for c in certs:
        held[c.agency] = held.get(c.agency, True) and c.revoked
    return {a for a, revoked in held.items() if revoked}


_ID = re.compile(r"[a-z0-9][a-z0-9-]{0,63}")  # as node.config's agency ids
_MAX_COMMON = 64
"""Characters an X.509 common name holds at most (RFC 5280's ub-common-name)."""


def check_names(*, network: str | None = None, agencies: Iterable[str] = (),
                hosts: Iterable[str] = ()) -> None:
    """The network id, agency ids and hosts a PKI command was given, checked as the command
    would before it asks a passphrase or writes anything: :class:`PkiError` naming the bad one
    (the command line's bad input, exit 2)."""
    if network is not None and not is_identifier(network):
        raise PkiError(f"network id {network!r}: a ledger's network id is 1 to 64 lower-case "
                       "letters, digits, '.', '_' and '-', starting with a letter or digit")
    for agency in agencies:
        _check_id(agency)
    _sans("localhost", hosts)


def _check_id(agency: str) -> None:
    if not _ID.fullmatch(agency):
        raise PkiError(f"agency id {agency!r}: use 1 to 64 lower-case letters, digits and '-', "
                       "starting with a letter or digit")
    if agency in _RESERVED:
        raise PkiError(f"agency id {agency!r} is reserved in the PKI (its certificate would "
                       "pass for the CA's, the operator's or etcd's root)")


def _issue_operator_cert(folder: Path, ca_cert: x509.Certificate,
                         ca_key: ec.EllipticCurvePrivateKey, passphrase: bytes,
                         now: _dt.datetime) -> None:
    key, cert = _leaf_cert(ca_cert, ca_key, ETCD_ROOT, now, ca_cert.not_valid_after_utc,
                           [ExtendedKeyUsageOID.CLIENT_AUTH])
    _replace_pair(folder, OPERATOR, key, cert, passphrase)


def ensure_operator_cert(folder: Path, passphrase: bytes, *, now: _dt.datetime) -> None:
    """``operator.crt`` / ``operator.key`` in ``folder``, made if a PKI from before ADR 48 has
    none (needs the CA key)."""
    if not (folder / f"{OPERATOR}.crt").exists():
        ca_cert, ca_key = _ca(folder, passphrase)
        _issue_operator_cert(folder, ca_cert, ca_key, passphrase, now)


def operator_credentials(folder: Path, passphrase: bytes) -> tuple[bytes, bytes, bytes]:
    """(CA, operator certificate, operator key) as PEM for an etcd administrator's client;
    the clear key stays in memory."""
    if not (folder / f"{OPERATOR}.key").exists():
        raise PkiError(f"{folder} holds no operator certificate (operator.key): a PKI made "
                       "before ADR 48 gets one from `ledger-node pki add` or `pki revoke`, "
                       "run where the CA key is")
    key = _load_key(folder / f"{OPERATOR}.key", passphrase)
    return (read_capped(folder / "ca.crt"), read_capped(folder / f"{OPERATOR}.crt"),
            _key_bytes(key, None))


def _certificate(path: Path) -> x509.Certificate:
    try:
        return x509.load_pem_x509_certificate(read_capped(path))
    except FileNotFoundError as e:
        raise PkiError(f"no certificate file {path}") from e
    except OSError as e:
        raise PkiError(f"cannot read {path}: {e.strerror or e}") from e
    except ValueError as e:
        raise PkiError(f"{path} is not a PEM certificate: {e}") from e


def check_certificates(folder: Path, agency: str, key: ec.EllipticCurvePrivateKey, *,
                       now: _dt.datetime, strict_tls: bool = sys.version_info >= (3, 13)
                       ) -> int:
    """Check ``<agency>.crt`` against its key and the CA in ``folder``, and both against
    ``now``; :class:`PkiError` names what is wrong. Returns the days left until the earlier
    of the two expires (etcd and peers would refuse an expired one mid-run)."""
    ca, cert = _certificate(folder / "ca.crt"), _certificate(folder / f"{agency}.crt")
    if _spki(cert.public_key()) != _spki(key.public_key()):
        raise PkiError(f"{folder / (agency + '.crt')} is not the certificate of the key in "
                       f"{folder / (agency + '.key')}")
    try:
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature) as e:
        raise PkiError(f"{folder / (agency + '.crt')} is not signed by {folder / 'ca.crt'}"
                       ) from e
    crl = _read_crl(folder, ca)
    entry = None if crl is None else crl.get_revoked_certificate_by_serial_number(
        cert.serial_number)
    if entry is not None:
        raise PkiError(f"{folder / (agency + '.crt')} was revoked on "
                       f"{entry.revocation_date_utc:%Y-%m-%d} ({folder / CRL}): the network's "
                       "operator issues a new one (`ledger-node pki add`)")
    try:
        usages = set(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)
    except x509.ExtensionNotFound:
        usages = set()
    if not {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH} <= usages:
        raise PkiError(f"{folder / (agency + '.crt')} is not for both TLS servers and clients "
                       "(extended key usage): an agency's node and etcd member are both; "
                       "the network's operator makes a new one "
                       f"{_renew_how(folder, agency)}")
    if strict_tls:  # Python 3.13's TLS checks strictly: these fail every connection
        missing = [f"{name} has no {what} key identifier" for name, c, ext, what in (
            ("ca.crt", ca, x509.SubjectKeyIdentifier, "subject"),
            (f"{agency}.crt", cert, x509.AuthorityKeyIdentifier, "authority"))
            if not _has(c, ext)]
        if missing:
            raise PkiError(f"{'; '.join(missing)}: certificates made before ADR 54 fail this "
                           "Python's strict TLS checks; the network's operator runs "
                           "`ledger-node pki renew-ca`, then `pki renew` for each agency")
    for name, c in (("ca.crt", ca), (f"{agency}.crt", cert)):
        if now < c.not_valid_before_utc:
            start = f"{c.not_valid_before_utc:%Y-%m-%d %H:%M}"
            raise PkiError(f"{folder / name} is valid only from {start} UTC (is this "
                           "machine's clock right?)")
        if now >= c.not_valid_after_utc:
            raise PkiError(f"{folder / name} expired on {c.not_valid_after_utc:%Y-%m-%d}: "
                           + _renew_hint(folder, name, agency))
    return min((c.not_valid_after_utc - now).days for c in (ca, cert))


def _names(cert: x509.Certificate) -> list[x509.GeneralName]:
    try:
        return list(cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value)
    except x509.ExtensionNotFound:
        return []


def _names_host(names: Iterable[x509.GeneralName], host: str) -> bool:
    """Whether a certificate with these SANs is valid for ``host``, as a TLS client checks it:
    an IP address against its IP addresses, a name against its DNS names (``*.`` covering
    one label)."""
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        want = host.lower().rstrip(".")
        for n in names:
            if not isinstance(n, x509.DNSName):
                continue
            dns = n.value.lower().rstrip(".")
            if dns == want or (dns.startswith("*.") and "." in want
                               and want.split(".", 1)[1] == dns[2:]):
                return True
        return False
    return any(isinstance(n, x509.IPAddress) and n.value == ip for n in names)


def check_hosts(folder: Path, agency: str, hosts: Mapping[str, str]) -> None:
    """Check that ``<agency>.crt`` in ``folder`` names every host of ``hosts`` (what names it,
    a setting such as ``public_url``, → the host): peers, etcd and clients that connect to one
    it does not name refuse it at the handshake, from the first connection. Raises
    :class:`PkiError` naming the setting, the host, the names the certificate has and the
    command that adds the host."""
    path = folder / f"{agency}.crt"
    names = _names(_certificate(path))
    missing = {what: host for what, host in hosts.items() if not _names_host(names, host)}
    if not missing:
        return
    said = "; ".join(f"{host} ({what})" for what, host in missing.items())
    named = ", ".join(str(n.value) for n in names) or "no host"
    adds = " ".join(f"--host {host}" for host in dict.fromkeys(missing.values()))
    raise PkiError(f"{path} does not name {said}: peers, etcd members and clients that "
                   f"connect there refuse it at the TLS handshake (it names {named}). The "
                   "network's operator renews it where the CA key is kept "
                   f"{_renew_how(folder, agency, ' ' + adds)} (renew keeps the hosts it "
                   "named); or correct the setting in node.toml")


def _has(cert: x509.Certificate, extension: type[x509.ExtensionType]) -> bool:
    try:
        cert.extensions.get_extension_for_class(extension)
    except x509.ExtensionNotFound:
        return False
    return True


def _renew_hint(folder: Path, name: str, agency: str) -> str:
    if name == "ca.crt":
        return ("the network's operator renews it where the CA key is kept (`ledger-node pki "
                "renew-ca`, same key) and copies the new ca.crt to every agency")
    return "the network's operator renews it where the CA key is kept " + _renew_how(
        folder, agency)


def _renew_how(folder: Path, agency: str, hosts: str = "") -> str:
    """The keeper's renew command for ``agency``, as its PKI ``folder`` shows how it has its
    key: one the agency made itself (`pki request` left its request beside it) is renewed
    with ``--csr`` and stays the agency's, a certificate alone given back; without it, renew
    made the keeper a new key to give the agency, which such an agency never had at the
    keeper's (helper round 38K). ``hosts``: ``--host`` options to add."""
    if (folder / f"{agency}.csr").is_file():
        return (f"(`ledger-node pki renew --agency {agency}{hosts} --csr {agency}.csr`, the "
                f"request its key was certified for) and gives the agency the new {agency}.crt "
                "(its key stays with it)")
    return (f"(`ledger-node pki renew --agency {agency}{hosts}`) and gives the agency the new "
            f"{agency}.crt and {agency}.key")


def certificate_problem(folder: Path, agency: str, now: _dt.datetime,
                        in_use: Path | None = None) -> str | None:
    """What a running node's health says of its TLS certificates: the ones it runs with (the
    copies in ``in_use``, its runtime folder, else ``folder``'s) ending within
    :data:`WARN_DAYS` or ended; its certificate on the revocation list in ``folder`` (read
    again: the operator copies a new one there); that list's own next update near or past
    (OpenSSL refuses a list past it, and every peer connection with it). None: all well.
    Public (``/v1/health``): it names files by their place in the PKI folder, never a path of
    this machine."""
    said = _certificate_problem(folder, agency, now, in_use)
    if said is None:
        return None
    if in_use is not None:
        said = said.replace(str(in_use), "the node's runtime copy")
    return said.replace(str(folder), "the PKI folder")


def _certificate_problem(folder: Path, agency: str, now: _dt.datetime,
                         in_use: Path | None) -> str | None:
    where = in_use or folder
    try:
        ca, cert = _certificate(where / "ca.crt"), _certificate(where / f"{agency}.crt")
        crl = _read_crl(folder, _certificate(folder / "ca.crt"))
    except (PkiError, OSError) as e:
        return f"{UNREADABLE}: {e}"
    if crl is not None and crl.get_revoked_certificate_by_serial_number(
            cert.serial_number) is not None:
        return (f"this agency's TLS certificate (serial {cert.serial_number:x}) is on the "
                f"network's revocation list ({CRL} in the PKI folder): etcd members and peers "
                "refuse its new connections")
    renewed = ""
    with contextlib.suppress(PkiError, OSError):
        if in_use is not None and (
                _certificate(folder / f"{agency}.crt").serial_number != cert.serial_number
                or _certificate(folder / "ca.crt").serial_number != ca.serial_number):
            renewed = ("; the renewed certificates in the PKI folder are taken when the node "
                       "and its etcd member restart")
    for name, c in (("ca.crt", ca), (f"{agency}.crt", cert)):
        left = c.not_valid_after_utc - now
        if left.days < WARN_DAYS:
            when = ("ended" if left.total_seconds() <= 0 else f"ends in {left.days} days")
            return (f"the TLS certificate {name} this node runs with {when} "
                    f"({c.not_valid_after_utc:%Y-%m-%d}): etcd members and peers refuse it "
                    "once it has ended; " + (renewed[2:] if renewed else
                                              _renew_hint(folder, name, agency)))
    if crl is not None and crl.next_update_utc is not None:
        left = crl.next_update_utc - now
        if left.days < WARN_DAYS:
            return (f"the revocation list {CRL} in the PKI folder is valid until "
                    f"{crl.next_update_utc:%Y-%m-%d}: past it every connection checked "
                    "against it fails; copy the crl.pem the operator's `ledger-node pki "
                    "renew-ca` (or `revoke`) made to every agency")
    return None


def unlock(folder: Path, agency: str, passphrase: bytes, runtime: Path | None = None, *,
           now: _dt.datetime | None = None) -> Path:
    """Write ``ca.crt``, ``<agency>.crt`` and a clear ``<agency>.key`` into a 0700 runtime folder,
    after :func:`check_certificates` (at ``now``, else the clock's time).

    Returns that folder. The clear key exists only while the processes that need it run; call
    :func:`lock` on it at shutdown.
    """
    key = _load_key(folder / f"{agency}.key", passphrase)
    check_certificates(folder, agency, key, now=now or _dt.datetime.now(_dt.UTC))
    if runtime is None:
        base = runtime_base()
        sweep_stale_runtimes(base, agency)
        runtime = Path(tempfile.mkdtemp(prefix=f"credledger-{agency}-", dir=base))
    runtime.mkdir(parents=True, exist_ok=True, mode=0o700)
    runtime.chmod(0o700)
    (runtime / _OWNER).write_text(str(os.getpid()), encoding="ascii")
    for name in ("ca.crt", f"{agency}.crt", CRL):
        if name != CRL or (folder / CRL).exists():
            shutil.copyfile(folder / name, runtime / name)
    target = runtime / f"{agency}.key"
    target.unlink(missing_ok=True)
    _write(target, _key_bytes(key, None), 0o600)
    return runtime


_OWNER = "owner.pid"


def runtime_base() -> Path:
    """Where :func:`unlock` makes runtime folders: /dev/shm (memory-backed) when there is one."""
    shm = Path("/dev/shm")  # noqa: S108 - memory-backed; mkdtemp makes a private 0700 dir
    return shm if shm.is_dir() else Path(tempfile.gettempdir())


def sweep_stale_runtimes(base: Path, agency: str) -> list[Path]:
    """Remove ``agency``'s runtime folders in ``base`` whose owning process has ended without
    :func:`lock` (killed with SIGKILL, a crash): each holds a clear key. Folders of live
    processes, of other users, or without an owner file (being made right now) stay.
    Returns the folders removed."""
    removed = []
    for folder in base.glob(f"credledger-{agency}-*"):
        try:
            if not folder.is_dir() or folder.stat().st_uid != os.getuid():
                continue
            pid = int((folder / _OWNER).read_text(encoding="ascii"))
        except (OSError, ValueError):
            continue
        if pid <= 0 or _alive(pid):
            continue
        lock(folder)
        removed.append(folder)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process
    return True


def lock(runtime: Path) -> None:
    """Remove a runtime folder made by :func:`unlock` (its clear key first)."""
    for p in runtime.glob("*.key"):
        p.unlink(missing_ok=True)
    shutil.rmtree(runtime, ignore_errors=True)
