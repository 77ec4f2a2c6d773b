"""One error shape for every failure: ``{"error": {"code": ..., "message": ...}}``."""

from __future__ import annotations

from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException


class ErrorDetail(BaseModel):
    code: str
    message: str


class ErrorBody(BaseModel):
    error: ErrorDetail


_CODES = {400: "bad_request", 401: "unauthenticated", 403: "forbidden", 404: "not_found",
          405: "method_not_allowed", 409: "conflict", 413: "body_too_large", 422: "invalid_input",
          429: "rate_limited", 500: "server_error", 503: "unavailable"}


class ApiError(HTTPException):
    def __init__(self, status: int, message: str, code: str | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(status, message, headers=headers)
        self.code = code or _CODES.get(status, "error")


def body(status: int, message: str, code: str | None = None) -> dict:
    return {"error": {"code": code or _CODES.get(status, "error"), "message": message}}


def responses(*statuses: int) -> dict[int | str, dict]:
    """OpenAPI `responses=` entries documenting the error shape."""
    return {s: {"model": ErrorBody, "description": _CODES.get(s, "error")} for s in statuses}


def audit_refusal(request: Request, status: int, message: str) -> None:
    """SEC_03: an operator's refused or failed state-changing request leaves a record too
    (403 wrong role or CSRF token, 422 bad input, 500). Anonymous ones do not: the front
    door refuses those before reading them, and a flood of them must not fill the chain."""
    if request.method in ("GET", "HEAD", "OPTIONS") or request.url.path == "/login":
        return
    from ark_runtime.api import audit_hook

    session = request.app.state.auth.sessions.read(request)
    if session is None:
        return
    result = "failed" if status >= 500 else "refused"
    audit_hook.record(session.user, "request", {"method": request.method,
                                                "path": request.url.path[:200],
                                                "status": status}, result, detail=message)


def install(app: FastAPI) -> None:
    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = getattr(exc, "code", None)
        if exc.status_code in (403, 405, 422):
            audit_refusal(request, exc.status_code, str(exc.detail))
        return JSONResponse(body(exc.status_code, str(exc.detail), code),
                            status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()) if p != "body")
        message = f"{where}: {first.get('msg', 'invalid')}"
        audit_refusal(request, 422, message)
        return JSONResponse(body(422, message), status_code=422)

    @app.exception_handler(Exception)
    async def _crashed(request: Request, exc: Exception) -> JSONResponse:
        # The type only: an exception's text may carry data that must not reach a client.
        audit_refusal(request, 500, f"server error: {type(exc).__name__}")
        return JSONResponse(body(500, "server error; see the API log"), status_code=500)
