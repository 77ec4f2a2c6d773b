"""Execution: approved plans become positions (AGENT_04). Paper by default; a live broker
adapter implements `broker.BrokerAdapter` and never starts without an explicit, audited
inventory setting."""
