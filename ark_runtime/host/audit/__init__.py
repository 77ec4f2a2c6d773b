"""SEC_03 on a host: the audit chain, its spool, ingest and `ark audit`."""
