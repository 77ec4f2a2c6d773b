"""The agent bus (AGENT_01-03): envelope, type registry, Redis Streams transport, error bus."""
