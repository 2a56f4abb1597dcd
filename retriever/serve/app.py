"""HTTP JSON API over :class:`~retriever.serve.service.QueryService` (FastAPI).

Endpoints::

    GET  /health      status, model, tasks, store rows, limits, counters
    GET  /manifests   the task indexes' manifests, the store (and its score folder's manifest)
    POST /gold        {"text" | "texts", "k", "tasks"}  -> per text, per task, nearest gold
    exemplars POST /corpus      {"text" | "texts", "k", "min_score": {task: x}, "cluster"}
                      -> per text, nearest corpus documents with task scores and previews

Every error is ``{"error": "<one line>"}`` with a 4xx status: 400 invalid JSON, 404 unknown path
or missing index/store, 405 wrong method, 413 body / text / batch too large, 422 bad field
(empty text, k out of range, unknown task or field).

This module imports FastAPI at import time; import it only when serving.
"""

from typing import Optional

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, StrictStr
from starlette.exceptions import HTTPException as StarletteHTTPException

from retriever import __version__
from retriever.errors import RequestError
from retriever.serve.service import QueryService


class _Query(BaseModel):
    model_config = ConfigDict(extra="forbid")

    text: Optional[StrictStr] = None  # noqa: UP045  (FastAPI evaluates these at runtime)
    texts: Optional[list[StrictStr]] = None  # noqa: UP045
    k: int = 10


class GoldQuery(_Query):
    """``/gold`` request: the texts, k, and the tasks (default: every task served)."""

    tasks: Optional[list[StrictStr]] = None  # noqa: UP045


class CorpusQuery(_Query):
    """``/corpus`` request: the texts, k, and filters (``score_<task> >= x``, a cluster)."""

    min_score: Optional[dict[StrictStr, float]] = None  # noqa: UP045
    cluster: Optional[StrictStr] = None  # noqa: UP045


class BodyLimit:
    """ASGI middleware: requests with a body over ``max_bytes`` get 413 before they are parsed
    (by ``Content-Length`` when given, else counted as the body streams in)."""

    def __init__(self, app, max_bytes: int):
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        msg = (
            f"request body over {self.max_bytes:,} bytes (--max-body-bytes); send fewer or "
            "shorter texts"
        )
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_bytes:
            return await JSONResponse({"error": msg}, status_code=413)(scope, receive, send)
        seen = 0
        too_big = False

        async def counted():
            nonlocal seen, too_big
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    too_big = True
                    return {"type": "http.request", "body": b"", "more_body": False}
            return message

        started = False

        async def guarded_send(message):
            nonlocal started
            if too_big and not started:
                started = True
                resp = JSONResponse({"error": msg}, status_code=413)
                await resp(scope, receive, send)
                return
            if too_big:
                return  # the 413 was sent; drop the app's own answer
            started = message["type"] == "http.response.start" or started
            await send(message)

        await self.app(scope, counted, guarded_send)


def _validation_message(exc: RequestValidationError) -> tuple[int, str]:
    errors = exc.errors()
    if not errors:
        return 422, "invalid request"
    e = errors[0]
    if e.get("type") == "json_invalid":
        reason = (e.get("ctx") or {}).get("error", "")
        return (
            400,
            f'invalid JSON body ({reason}); send a JSON object such as {{"text": "...", "k": 10}}',
        )
    loc = [str(x) for x in e.get("loc", ()) if x != "body"]
    where = ".".join(loc) or "body"
    if e.get("type") == "missing" and not loc:
        return 400, 'a JSON object body is required, such as {"text": "...", "k": 10}'
    if e.get("type") == "extra_forbidden":
        return 422, f"unknown field {where!r}"
    if e.get("type") in ("model_attributes_type", "dict_type") and not loc:
        return 400, 'the body must be a JSON object, such as {"text": "...", "k": 10}'
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return 422, f"{where}: {e.get('msg', 'invalid')}{more}"


def create_app(service: QueryService) -> FastAPI:
    """The FastAPI application answering with ``service`` (loaded beforehand, used by every
    request)."""
    app = FastAPI(
        title="retriever query service",
        version=__version__,
        description="Nearest gold exemplars and corpus documents of new texts.",
    )
    app.add_middleware(BodyLimit, max_bytes=service.config.max_body_bytes)
    app.state.service = service

    @app.exception_handler(RequestValidationError)
    async def _bad_request(request: Request, exc: RequestValidationError):
        status, msg = _validation_message(exc)
        return JSONResponse({"error": msg}, status_code=status)

    @app.exception_handler(RequestError)
    async def _request_error(request: Request, exc: RequestError):
        return JSONResponse({"error": str(exc)}, status_code=exc.status)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException):
        msg = {
            404: f"no endpoint {request.url.path}; try GET /health, GET /manifests, POST /gold, "
            "POST /corpus",
            405: f"{request.method} is not allowed on {request.url.path}",
        }.get(exc.status_code, str(exc.detail))
        return JSONResponse({"error": msg}, status_code=exc.status_code)

    @app.get("/health")
    def health():
        return service.health()

    @app.get("/manifests")
    def manifests():
        return service.manifests()

    @app.post("/gold")
    def gold(q: GoldQuery):
        texts = service.texts_of(q.text, q.texts)
        results = service.gold(texts, q.k, q.tasks)
        return {"model": service.model, "k": q.k, "results": results}

    @app.post("/corpus")
    def corpus(q: CorpusQuery):
        texts = service.texts_of(q.text, q.texts)
        results = service.corpus(texts, q.k, q.min_score, q.cluster)
        return {"model": service.model, "k": q.k, "results": results}

    return app
