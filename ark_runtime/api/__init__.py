"""The reasoning API: an ASGI app (FastAPI) served by uvicorn under systemd."""
