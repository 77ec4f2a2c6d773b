"""`invoke load`: the console API under locust."""
