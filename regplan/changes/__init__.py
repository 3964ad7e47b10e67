"""Apply, rollback, purge and history: the transaction over a storage's store."""
