"""Helpers shared by test modules: a shell on a lab host, polling, Debian's chromium."""
