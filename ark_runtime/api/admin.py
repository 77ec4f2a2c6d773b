"""Admin actions (UI_01 unit control, UI_02 overlay). The overlay is only a view: every
route here requires an admin session plus its CSRF token, and every call — refused by the
action itself or not — leaves an audit record with who, what and the result."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, Literal

import redis
from fastapi import APIRouter, BackgroundTasks, Depends, Path, Request
from pydantic import BaseModel, Field

from ark_runtime.api import audit_hook
from ark_runtime.api.auth import admin
from ark_runtime.api.errors import ApiError, responses
from ark_runtime.api.sessions import Session
from ark_runtime.api.units import UNIT, UnitError
from ark_runtime.bus.errors import ErrorBus
from ark_runtime.bus.registry import PIPELINE
from ark_runtime.bus.streams import DEAD_STREAM, inbox
from ark_runtime.host import panic as host_panic
from ark_runtime.host.layout import panic_flag
from ark_runtime.pipeline import API_UNIT

router = APIRouter(prefix="/api", tags=["admin"])
Admin = Annotated[Session, Depends(admin)]
ERRORS = responses(401, 403, 404, 409, 413, 422, 503)


class PanicOut(BaseModel):
    """The host-side panic's report, as `invoke panic` reads it from a host."""

    killed: list[str]
    remaining: int
    host_ms: int
    warnings: list[str]


class ActionResult(BaseModel):
    action: str
    result: Literal["ok", "failed", "partial"]
    detail: str = ""
    panic: PanicOut | None = None


class Reason(BaseModel):
    reason: str = Field(default="", max_length=500)


class DeadLetters(BaseModel):
    limit: int = Field(default=100, ge=1, le=10_000)


class PanicFailed(UnitError):
    """Processes of ARK survived the SIGKILL (the report says how many)."""

    status = 503


async def _audited(request: Request, session: Session, action: str, args: dict[str, Any],
                   run: Callable[[], Awaitable[str]]) -> ActionResult:
    started = time.perf_counter()
    try:
        detail = await run()
        request.app.state.pipeline.invalidate()
    except (UnitError, OSError, redis.RedisError) as exc:
        audit_hook.record(session.user, action, args, "failed", detail=str(exc),
                          duration_ms=(time.perf_counter() - started) * 1000)
        raise ApiError(getattr(exc, "status", 503), f"{action} failed: {exc}") from None
    result = "partial" if detail.startswith("partial") else "ok"
    audit_hook.record(session.user, action, args, result, detail=detail,
                      duration_ms=(time.perf_counter() - started) * 1000)
    return ActionResult(action=action, result=result, detail=detail)


def _sync_redis(request: Request) -> redis.Redis:
    return request.app.state.sync_redis()


@router.post("/units/{unit}/{verb}", response_model=ActionResult, responses=ERRORS)
async def control_unit(request: Request, session: Admin,
                       unit: Annotated[str, Path(pattern=UNIT.pattern, max_length=80)],
                       verb: Literal["start", "stop", "restart"]) -> ActionResult:
    async def run() -> str:
        await request.app.state.units.control(unit, verb)
        return f"{verb} {unit}"

    return await _audited(request, session, f"unit.{verb}", {"unit": unit}, run)


@router.post("/admin/panic", response_model=ActionResult, responses=ERRORS)
async def panic(request: Request, session: Admin, body: Reason,
                after: BackgroundTasks) -> ActionResult:
    """The same host-side panic as `invoke panic` (ark_runtime/host/panic.py): fsynced flag,
    SIGKILL of every ARK unit and process. The API's own unit is spared until the answer
    is sent; then the panic runs again and takes the API with it."""
    who = f"{session.user} via console"
    report = host_panic.PanicReport()

    async def run() -> str:
        nonlocal report
        report = await asyncio.to_thread(host_panic.panic, who, spare_unit=API_UNIT)
        if report.remaining != 0:
            raise PanicFailed(f"{report.remaining} ARK process(es) still running after "
                              f"SIGKILL: {'; '.join(report.warnings)[-300:]}")
        return report.summary()

    result = await _audited(request, session, "panic", {"reason": body.reason}, run)
    after.add_task(host_panic.panic, who)  # the API's own unit, once the answer is out
    return result.model_copy(update={"panic": PanicOut(**report.as_dict())})


@router.post("/admin/recover", response_model=ActionResult, responses=ERRORS)
async def recover(request: Request, session: Admin, body: Reason) -> ActionResult:
    async def run() -> str:
        panic_flag().unlink(missing_ok=True)
        await request.app.state.units.control("ark.target", "start")
        return "panic cleared; ark.target started (cold-start checks run first)"

    return await _audited(request, session, "recover", {"reason": body.reason}, run)


@router.post("/admin/snapshot", response_model=ActionResult, responses=ERRORS)
async def snapshot(request: Request, session: Admin) -> ActionResult:
    async def run() -> str:
        await request.app.state.units.control("ark-snapshot.service", "start")
        return "ark-snapshot.service started"

    return await _audited(request, session, "snapshot", {}, run)


@router.post("/admin/pause", response_model=ActionResult, responses=ERRORS)
async def pause(request: Request, session: Admin, body: Reason) -> ActionResult:
    bus = ErrorBus(_sync_redis(request), "operator")

    async def run() -> str:
        halted = await asyncio.to_thread(bus.pause, "operator", body.reason or "console",
                                         by=f"operator:{session.user}")
        return "paused " + ", ".join(halted)

    return await _audited(request, session, "pause", {"reason": body.reason}, run)


@router.post("/admin/resume", response_model=ActionResult, responses=ERRORS)
async def resume(request: Request, session: Admin, body: Reason) -> ActionResult:
    bus = ErrorBus(_sync_redis(request), "operator")

    async def run() -> str:
        cleared = await asyncio.to_thread(bus.clear, None, by=f"operator:{session.user}",
                                          reason=body.reason)
        return "cleared " + (", ".join(cleared) or "nothing (not paused)")

    return await _audited(request, session, "resume", {"reason": body.reason}, run)


class UnreplayableLetter(UnitError):
    status = 409


def _original(entry_id: str, raw: str | None) -> dict[str, str]:
    """The dead letter's original stream fields ({} when there is nothing left to replay), or
    UnreplayableLetter naming the entry."""
    import json

    try:
        original = json.loads(raw or "{}")
    except ValueError:
        original = None
    if not isinstance(original, dict) or \
            not all(isinstance(k, str) and isinstance(v, str) for k, v in original.items()):
        raise UnreplayableLetter(f"dead letter {entry_id}: `original` is not a JSON object of "
                                 "stream fields; nothing was replayed (purge or fix it first)")
    return original


# Moves one dead letter back into its inbox only if this call removed it from the dead
# stream: two replays racing (two admins, a double click) cannot both re-queue it, so a dead
# letter enters the pipeline at most once more (docs/AGENT_PROTOCOL.md, bounded marks).
# `#!lua`: refused as a whole over maxmemory, so the XDEL never runs without the XADD.
_REPLAY_LUA = """#!lua
if redis.call('XDEL', KEYS[1], ARGV[1]) == 1 then
  return redis.call('XADD', KEYS[2], '*', unpack(ARGV, 2))
end
return false
"""


def _replay(r: redis.Redis, limit: int) -> str:
    """All or nothing for bad letters: every letter is checked before any moves (a bad one is
    a 409 naming it); then each moves atomically, at most once."""
    inboxes = {inbox(a) for a in PIPELINE}
    moves, skipped = [], 0
    for entry_id, fields in r.xrange(DEAD_STREAM, count=limit):
        source = fields.get("source_stream", "")
        if source not in inboxes:
            skipped += 1  # only ever back into a pipeline inbox
            continue
        original = _original(entry_id, fields.get("original"))
        if not original:
            skipped += 1  # nothing left to replay (an entry trimmed before it was read)
            continue
        moves.append((entry_id, source, original))
    script = r.register_script(_REPLAY_LUA)
    moved = 0
    for entry_id, source, original in moves:
        flat = [x for kv in original.items() for x in kv]
        if script(keys=[DEAD_STREAM, source], args=[entry_id, *flat]):
            moved += 1
    return f"{'partial: ' if skipped else ''}replayed {moved}, skipped {skipped}"


@router.post("/admin/dead-letters/replay", response_model=ActionResult, responses=ERRORS)
async def replay(request: Request, session: Admin, body: DeadLetters) -> ActionResult:
    r = _sync_redis(request)
    return await _audited(request, session, "dead.replay", {"limit": body.limit},
                          lambda: asyncio.to_thread(_replay, r, body.limit))


def _purge(r: redis.Redis, limit: int) -> str:
    ids = [eid for eid, _ in r.xrange(DEAD_STREAM, count=limit)]
    return f"purged {r.xdel(DEAD_STREAM, *ids) if ids else 0}"


@router.post("/admin/dead-letters/purge", response_model=ActionResult, responses=ERRORS)
async def purge(request: Request, session: Admin, body: DeadLetters) -> ActionResult:
    r = _sync_redis(request)
    return await _audited(request, session, "dead.purge", {"limit": body.limit},
                          lambda: asyncio.to_thread(_purge, r, body.limit))


class BreakerResetBody(BaseModel):
    reason: str = Field(min_length=1, max_length=500)


@router.post("/admin/breakers/{breaker}/reset", response_model=ActionResult, responses=ERRORS)
async def reset_breaker(request: Request, session: Admin,
                        breaker: Literal["daily_loss", "loss_streak"],
                        body: BreakerResetBody) -> ActionResult:
    """Queue `hrm.breaker_reset` in HRM's inbox (AGENT_04): HRM applies it exactly once and
    publishes the cleared state; the console needs no access to HRM's store."""
    from ark_runtime.bus.risk import send_reset

    r = _sync_redis(request)

    async def run() -> str:
        env = await asyncio.to_thread(send_reset, r, breaker, body.reason,
                                      f"operator:{session.user}")
        return f"reset of {breaker} queued for HRM (message {env.message_id})"

    return await _audited(request, session, "hrm.breaker_reset",
                          {"breaker": breaker, "reason": body.reason}, run)
