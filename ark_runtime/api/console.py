"""Read-only console routes (any signed-in operator): pages, status, logs, trace, chatter."""

from __future__ import annotations

import asyncio
from pathlib import Path as FsPath
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query, Request, WebSocket
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from pydantic import BaseModel

from ark_runtime.api import logs
from ark_runtime.api.auth import operator, same_origin
from ark_runtime.api.errors import ApiError, responses
from ark_runtime.api.sessions import Session
from ark_runtime.api.units import UnitError
from ark_runtime.validators import ValidationError, validate_id

templates = Jinja2Templates(directory=str(FsPath(__file__).parent / "templates"))
router = APIRouter()
Operator = Annotated[Session, Depends(operator)]


class StatusOut(BaseModel):
    units: list[dict[str, Any]]
    units_error: str | None = None
    pipeline: dict[str, Any]


# The schema's enum of log sources, built from the one list (ark_runtime/pipeline.py).
LogSource = Literal[logs.SOURCES]  # type: ignore[valid-type]


class LogsOut(BaseModel):
    lines: list[dict[str, Any]]
    cursor: str


class Hop(BaseModel):
    ts: str
    source: str
    event: str
    detail: str
    message_id: str | None = None


UUID = r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"


class TraceOut(BaseModel):
    correlation_id: str | None
    hops: list[Hop]


@router.get("/login", response_class=HTMLResponse, include_in_schema=True, tags=["pages"])
async def login_page(request: Request) -> Response:
    return templates.TemplateResponse(request, "login.html", {})


@router.get("/", response_class=HTMLResponse, tags=["pages"],
            responses={303: {"description": "not signed in: to /login"}})
async def index(request: Request) -> Response:
    session = request.app.state.auth.sessions.read(request)
    if session is None:
        return RedirectResponse("/login", status_code=303)
    return templates.TemplateResponse(request, "console.html", {
        "session": session, "agents": logs.SOURCES, "levels": logs.LEVELS})


@router.get("/api/me", tags=["console"], responses=responses(401))
async def me(session: Operator) -> dict[str, str]:
    return {"user": session.user, "role": session.role, "csrf": session.csrf}


@router.get("/api/status", response_model=StatusOut, tags=["console"],
            responses=responses(401, 503))
async def status(request: Request, session: Operator) -> StatusOut:
    units_error = None
    try:
        units = await request.app.state.units.status()
    except UnitError as exc:
        units, units_error = [], str(exc)
    try:
        pipe = await request.app.state.pipeline.get()
    except Exception as exc:  # Redis away: say so rather than fail the whole page
        raise ApiError(503, f"pipeline state unavailable: {type(exc).__name__}") from None
    return StatusOut(units=units, units_error=units_error, pipeline=pipe)


CURSOR = r"^([a-z]{1,16}:[0-9]{1,15}(,[a-z]{1,16}:[0-9]{1,15}){0,15})?$"


def _cursor(raw: str) -> dict[str, int]:
    """`agent:offset,...` as the previous answer gave it; names of no log source are ignored."""
    pairs = (part.partition(":") for part in filter(None, raw.split(",")))
    return {name: int(offset) for name, _, offset in pairs if name in logs.SOURCES}


@router.get("/api/logs", response_model=LogsOut, tags=["console"], responses=responses(401, 422))
async def read_logs(
    session: Operator,
    agent: Annotated[list[LogSource] | None, Query(max_length=len(logs.SOURCES))] = None,
    level: Annotated[str | None, Query(pattern="^(debug|info|warning|error|critical)$")] = None,
    lines: Annotated[int, Query(ge=1, le=logs.MAX_LINES)] = 100,
    cursor: Annotated[str, Query(max_length=400, pattern=CURSOR)] = "",
) -> LogsOut:
    chosen = list(dict.fromkeys(agent)) if agent else list(logs.SOURCES)
    start = _cursor(cursor)
    result = logs.idle(chosen, start) or await asyncio.to_thread(logs.read, chosen, level, lines,
                                                                  start)
    return LogsOut(lines=result["lines"],
                   cursor=",".join(f"{k}:{v}" for k, v in result["cursor"].items()))


@router.get("/api/trace/{ident}", response_model=TraceOut, tags=["console"],
            responses=responses(401, 422))
async def trace(session: Operator, ident: Annotated[str, Path(pattern=UUID)]) -> TraceOut:
    from ark_runtime import trace as tracing
    from ark_runtime.logjson import log_dir

    try:
        ident = validate_id(ident)
    except ValidationError as exc:
        raise ApiError(422, f"ident: {exc}") from None
    correlation, hops = await asyncio.to_thread(tracing.INDEX.collect, ident, [log_dir()])
    return TraceOut(correlation_id=correlation, hops=[
        Hop(ts=h.ts, source=h.source, event=h.event, detail=h.detail, message_id=h.message_id)
        for h in hops])


@router.websocket("/ws/chatter")
async def chatter(ws: WebSocket) -> None:
    session = ws.app.state.auth.sessions.read(ws)
    if session is None or not same_origin(ws.headers.get("origin"), ws.url.scheme,
                                          ws.headers.get("host")):
        await ws.close(code=1008, reason="sign in first")  # cross-site or anonymous
        return
    await ws.app.state.hub.serve(ws, session, ws.app.state.auth.sessions)
