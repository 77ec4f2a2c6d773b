"""The console's new audit records (refusal summaries, refused requests) in the shape root's
ingester accepts (host/audit/console_record.py), and the digest's per-client-per-minute counting."""

from __future__ import annotations

import pytest

from ark_runtime.api import audit_hook
from ark_runtime.api.refusals import RefusalDigest
from ark_runtime.host.audit.console_record import ConsoleRecord
from tests.support.journal import FakeJournald


@pytest.mark.requirement("SEC_03")
def test_refusals_are_summed_per_client_per_minute_in_an_ingestible_shape(
        monkeypatch: pytest.MonkeyPatch):
    journal = FakeJournald().start()
    monkeypatch.setenv("ARK_AUDIT_JOURNAL_SOCKET", str(journal.path))
    monkeypatch.delenv("ARK_AUDIT_SINK", raising=False)
    now = [600.0]
    digest = RefusalDigest(audit_hook.record, clock=lambda: now[0])
    for i in range(50):
        digest.refused("192.0.2.1", f"user{i % 7}", "rate limited")
    digest.refused("192.0.2.2", "victor", "rate limited")
    now[0] += 60  # the next minute: the last one's summaries are written
    digest.refused("192.0.2.1", "victor", "rate limited")
    audit_hook.record("alice", "request", {"method": "POST", "path": "/api/admin/pause",
                                           "status": 403}, "refused")
    records = [ConsoleRecord.model_validate(r) for r in journal.records()]
    journal.close()
    summary = [r for r in records if "refusals" in r.args]
    assert len(summary) == 1 and summary[0].args["refusals"] == 49
    assert summary[0].args["client"] == "192.0.2.1"
    assert len(summary[0].args["names"].split(",")) == RefusalDigest.MAX_USERS
    assert len(records) == 5  # 2 first refusals, 1 summary, the next minute's first, request
