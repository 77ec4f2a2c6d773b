"""`invoke load` pieces: duration parsing, locust CSV summary, the report."""

from __future__ import annotations

import os
import subprocess
import time

import psutil
import pytest

from ark_ops.errors import OpsError
from ark_ops.load.run import (
    Sampler,
    api_url,
    parse_duration,
    render,
    steady_rps,
    summarise,
    worker_processes,
)

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


@pytest.mark.requirement("TEST_03")
def test_load_is_spread_over_workers_once_one_locust_is_not_enough(monkeypatch):
    monkeypatch.setattr(os, "cpu_count", lambda: 4)
    assert worker_processes(100) == 1 and worker_processes(500) == 4
    assert worker_processes(500, 2) == 2
    with pytest.raises(OpsError, match="--processes"):
        worker_processes(500, 0)


HISTORY = ("Timestamp,User Count,Type,Name,Requests/s,Failures/s\n"
           + "".join(f"{t},{u},,Aggregated,{r},0\n" for t, u, r in [
               (1, 250, 120.0), (2, 500, 300.0), (3, 500, 470.0), (4, 500, 480.0),
               (5, 500, 497.0), (6, 500, 501.0), (7, 500, 499.0), (8, 500, 350.0)])
           + "9,500,GET,health,300.0,0\n")


@pytest.mark.requirement("TEST_03")
def test_steady_rps_is_the_median_once_every_user_runs(tmp_path):
    history = tmp_path / "locust_stats_history.csv"
    history.write_text(HISTORY)
    # users reached at t=2; the rolling window's first 2 s and the last second are skipped
    assert steady_rps(history, 500) == 498.0
    assert steady_rps(tmp_path / "missing.csv", 500) is None


def test_generator_sampler_counts_the_whole_process_tree():
    proc = subprocess.Popen(["sh", "-c", "sleep 5 & sleep 5 & wait"])
    try:
        time.sleep(0.3)
        s = Sampler(proc.pid, tree=True)
        s.start()
        time.sleep(1.5)
        alone = psutil.Process(proc.pid).memory_info().rss / 2**20
        summary = s.stop()
        assert summary["samples"] >= 1 and summary["rss_mib_max"] > alone
    finally:
        proc.kill()
        proc.wait()


def test_api_url_keeps_a_given_port():
    assert api_url("10.0.0.1") == "https://10.0.0.1:8101"
    assert api_url("127.0.0.1:9000") == "https://127.0.0.1:9000"
    assert api_url("[::1]") == "https://[::1]:8101" and api_url("[::1]:9") == "https://[::1]:9"
    assert api_url("http://127.0.0.1:8101") == "http://127.0.0.1:8101"
    assert api_url("https://ark.example.org") == "https://ark.example.org"
