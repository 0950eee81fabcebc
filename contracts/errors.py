"""The exception tree of the ``contracts`` package.

::

    LedgerError (ledger.errors)
    └── ContractError                base of everything contracts raises on purpose
        ├── RuleError                a rule that is malformed, does not compile, or names a
        │                            claim / parameter / credit field it may not use
        └── ApplicationError         an application that does not fit its rule (missing
                                     credential type or claim, no subject identifier)

Messages name rules, expressions, types and claims, never claim values.
"""

from __future__ import annotations

from ledger.errors import LedgerError

__all__ = ["ApplicationError", "ContractError", "RuleError"]


class ContractError(LedgerError):
    """Base class of every error the contracts package raises on purpose."""


class RuleError(ContractError):
    """An approval rule that cannot be registered or evaluated as written."""


class ApplicationError(ContractError):
    """An application whose inputs do not fit the rule it is judged by."""
