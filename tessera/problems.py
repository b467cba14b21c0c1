"""Rendering errors: RFC 9457 problem details on our own APIs.

Every service installs `problem_handlers()` so a `TesseraError` (or a Starlette HTTPException)
becomes `application/problem+json` with a status, title and detail, never a bare 500 page.
"""

import logging

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import HTTPExceptionHandler

from tessera.errors import STATUS_TITLES, PolicyCompileError, TesseraError

PROBLEM_MEDIA_TYPE = "application/problem+json"
logger = logging.getLogger("tessera.errors")


class ProblemResponse(JSONResponse):
    media_type = PROBLEM_MEDIA_TYPE


def problem(status: int, title: str, detail: str, **extensions: object) -> ProblemResponse:
    body = {"type": "about:blank", "title": title, "status": status, "detail": detail, **extensions}
    return ProblemResponse(body, status_code=status)


def problem_from_error(error: TesseraError) -> ProblemResponse:
    extensions: dict[str, object] = {}
    if error.reasons != [error.detail]:
        extensions["reasons"] = error.reasons
    if isinstance(error, PolicyCompileError):
        extensions.update(line=error.line, column=error.column)
    return problem(error.status_code, error.title, error.detail, **extensions)


async def _tessera_error(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, TesseraError)
    if exc.status_code >= 500:
        logger.error("request failed: %s", exc.detail)
    return problem_from_error(exc)


async def _http_exception(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    return problem(exc.status_code, STATUS_TITLES.get(exc.status_code, "Error"), str(exc.detail))


async def _unexpected(_request: Request, exc: Exception) -> Response:
    logger.exception("unexpected error", exc_info=exc)
    return problem(500, STATUS_TITLES[500], "the server failed to handle this request")


def problem_handlers() -> dict[type[Exception], HTTPExceptionHandler]:
    return {TesseraError: _tessera_error, HTTPException: _http_exception, Exception: _unexpected}
