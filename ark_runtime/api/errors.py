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
          429: "rate_limited", 503: "unavailable"}


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


def install(app: FastAPI) -> None:
    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = getattr(exc, "code", None)
        return JSONResponse(body(exc.status_code, str(exc.detail), code),
                            status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()) if p != "body")
        return JSONResponse(body(422, f"{where}: {first.get('msg', 'invalid')}"),
                            status_code=422)
