"""The ledger core: codec, keys, transactions, Merkle log, state machine, store."""
