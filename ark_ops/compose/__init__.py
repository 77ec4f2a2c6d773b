"""`invoke compose.*`: the Docker Compose stack's files and the engine that runs it."""
