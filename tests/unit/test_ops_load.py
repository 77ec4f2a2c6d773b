"""`invoke load` pieces: duration parsing, locust CSV summary, the report."""

from __future__ import annotations

import pytest

from ark_ops.errors import OpsError
from ark_ops.load import parse_duration, render, summarise

HEADER = ("Type,Name,Request Count,Failure Count,Median Response Time,Average Response Time,"
          "Min Response Time,Max Response Time,Average Content Size,Requests/s,Failures/s,"
          "50%,66%,75%,80%,90%,95%,98%,99%,99.9%,99.99%,100%\n")


@pytest.mark.requirement("TEST_03")
def test_summary_and_report_from_locust_csv(tmp_path):
    csv = tmp_path / "locust_stats.csv"
    csv.write_text(HEADER
                   + "GET,health,1000,0,3,4,1,50,80,500.0,0,3,4,4,5,6,8,10,12,40,50,50\n"
                   + "GET,status,200,2,9,10,2,90,900,100.0,1,9,10,11,12,14,20,30,45,80,90,90\n"
                   + ",Aggregated,1200,2,4,5,1,90,200,600.0,1,4,5,6,7,9,12,20,30,60,90,90\n")
    rows = summarise(csv)
    assert rows["status"]["error_rate"] == 0.01 and rows["health"]["p99_ms"] == 12.0
    total = rows.pop("Aggregated")
    report = {"started": "t", "target_rps": 500, "duration_s": 60, "host": "h", "users": 500,
              "achieved_rps": total["rps"], "p50_ms": total["p50_ms"],
              "p95_ms": total["p95_ms"], "p99_ms": total["p99_ms"],
              "error_rate": total["error_rate"], "endpoints": rows,
              "api_process": {"cpu_percent_mean": 40}}
    text = render(report)
    assert "achieved 600.0 RPS" in text and "| status | 200 |" in text and "p99 30.0 ms" in text


def test_duration_parsing_names_the_option():
    assert parse_duration("60s") == 60 and parse_duration("2m") == 120
    assert parse_duration("90") == 90
    for bad in ("", "soon", "5x"):
        with pytest.raises(OpsError, match="--duration"):
            parse_duration(bad)
