"""The FastAPI application: the routers of files, fine-tuning jobs, models and chat
completions over one store, worker and set of models; every error in OpenAI's shape.

There are no /docs, /redoc or /openapi.json pages: they would be served to anyone without a
key, and load their JavaScript from a CDN. OpenAI's own API reference describes the routes,
and the bodies are built from the openai SDK's own types, so the SDK parses exactly what
OpenAI would send."""

from __future__ import annotations

import sys
from pathlib import Path

from fastapi import Depends, FastAPI
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException

import edu_qa

from . import routes_files, routes_jobs, routes_models
from .models import BASE_MODELS, Models, stand_ins
from .store import DEFAULT_DATA_DIR, OPEN_STATES, APIError, Store
from .web import BodyLimit, Service, key_hash, local_callers_only
from .worker import Worker


def create_app(data_dir: str | Path = DEFAULT_DATA_DIR, base_models: dict[str, str] | None = None,
               api_keys: list[str] | None = None, max_file_mb: float = 50,
               max_jobs_per_key: int = 4, use_gpu: bool = False, max_storage_mb: float = 50,
               serve_as: dict[str, str] | None = None) -> FastAPI:
    """The FastAPI application. base_models maps model ids to what edu_qa.load_local_model
    reads (default: the embedded model); with api_keys, requests need one of them. serve_as
    maps OpenAI model names to the base model that stands in for them (default: each of
    OPENAI_MODELS to the first base model). The data directory stays locked until
    app.state.store.close()."""
    base_models = base_models or BASE_MODELS
    serving = stand_ins(base_models, serve_as)  # first: a wrong --serve-as locks nothing
    hashes = frozenset(key_hash(k) for k in api_keys or [])
    store = Store(data_dir)
    worker = Worker(store, base_models, use_gpu)
    service = Service(store, worker, Models(store, base_models, serving), hashes,
                      max_file_mb, max_storage_mb, max_jobs_per_key)

    # no /docs, /redoc or /openapi.json: they would need no key, and load JavaScript from a CDN
    app = FastAPI(title="Local OpenAI-compatible fine-tuning service", docs_url=None,
                  redoc_url=None, openapi_url=None,
                  dependencies=[] if hashes else [Depends(local_callers_only)])
    app.add_middleware(BodyLimit, max_bytes=service.body_limit)
    app.state.service, app.state.store, app.state.worker = service, store, worker
    for router in (routes_files.router, routes_jobs.router, routes_models.models_router,
                   routes_models.chat_router):
        app.include_router(router)
    answer_errors_as_openai_does(app)

    # the jobs a stopped service left open are queued again: the one it was training first,
    # then the others in the fair queue's order (each key's last turn is in its records)
    for record in sorted(store.jobs.values(), key=lambda r: (
            r["object"]["status"] != "running", r.get("created", r["object"]["created_at"]))):
        if record["object"]["status"] in OPEN_STATES:
            resumed = record["object"]["status"] == "running"
            record["object"]["status"] = "validating_files"
            store.event(record, "The service restarted; the job is queued again")
            worker.submit(record["object"]["id"], resumed=resumed)
    return app


def answer_errors_as_openai_does(app: FastAPI) -> None:
    """Every error in OpenAI's shape: the service's own (APIError), a malformed query or path
    (400, naming the parameter), an unknown route (404) or method (405), and anything
    unforeseen (500, named on stderr, never with a traceback to the client)."""

    @app.exception_handler(APIError)
    async def api_error(request, err: APIError):
        return err.response()

    @app.exception_handler(RequestValidationError)
    async def bad_request(request, err: RequestValidationError):
        first = err.errors()[0] if err.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ())[1:]) or None
        return APIError(400, f"{where or 'request'}: {first.get('msg', 'invalid request')}",
                        param=where).response()

    @app.exception_handler(Exception)
    async def server_error(request, err: Exception):
        print(edu_qa.visible(f"finetune_service: {request.method} {request.url.path}: "
                             f"{type(err).__name__}: {err}"), file=sys.stderr)
        return APIError(500, f"The server had an error: {type(err).__name__}",
                        kind="server_error").response()

    @app.exception_handler(HTTPException)
    async def http_error(request, err: HTTPException):
        return APIError(err.status_code, str(err.detail), code=None).response()
