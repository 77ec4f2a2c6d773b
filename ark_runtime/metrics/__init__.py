"""`/metrics` for Prometheus (LOG_03): one exporter per host, `ark-metrics.service`.

Why one exporter unit rather than each agent serving its own figures: the agents are separate
processes that already leave everything worth measuring somewhere another process can read
it — systemd (state, restarts, watchdog pings = heartbeats), Redis (stream lengths, consumer
groups, dead-letter/error/decision side streams), the store and the files under
/var/lib/ark (panic flag, snapshots, heal.log). Reading them at scrape time with custom
collectors keeps the agents' hot loop free of metrics code, needs no shared multiprocess
directory (prometheus_client's multiprocess mode cannot do custom collectors or gauges of
other processes), and gives Prometheus one target per host. Each source is one small
collector; a source that fails reports `ark_collector_up{collector=...} 0` and the rest of
the scrape still answers.
"""
