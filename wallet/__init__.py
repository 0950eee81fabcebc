"""The citizen's wallet: an encrypted file holding a holder key and verified credentials.

Layers: :mod:`wallet.store` (the encrypted file format), :mod:`wallet.verify` (checks made before
a credential is kept), :mod:`wallet.core` (the :class:`Wallet` operations), :mod:`wallet.qr`
(QR codes) and :mod:`wallet.cli` (the ``wallet`` command). ``wallet`` imports only ``ledger``.
"""

from __future__ import annotations

from wallet.core import CredentialInfo, Disclosure, Wallet
from wallet.errors import BundleRefused, PresentationError, WalletError, WalletFileError

__all__ = [
    "BundleRefused",
    "CredentialInfo",
    "Disclosure",
    "PresentationError",
    "Wallet",
    "WalletError",
    "WalletFileError",
]
