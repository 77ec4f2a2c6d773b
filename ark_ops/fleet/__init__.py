"""Acting on every host at once over SSH: panic, recover, DR, logs, traces, audit and config
history."""
