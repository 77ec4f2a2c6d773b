"""SEC_03 on a host: the audit chain, the console records ingested from the journal, `ark audit`."""
