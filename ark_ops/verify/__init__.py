"""`invoke verify`: the compliance suite over the fleet and its reports (Markdown, JUnit, HTML)."""
