"""Sending an issue: prepare (load and check once) -> plan (against the ledger) -> engine
(workers, provider, retries) -> ledger, with the list read ahead in a process of its own."""
