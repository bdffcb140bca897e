"""What every route shares: the service's parts, who is calling, bodies measured while they
are read, and OpenAI's list pages.

Who may call: with API keys, a request without a valid "Authorization: Bearer KEY" gets 401,
as at OpenAI, and each key sees only its own files, jobs and models (only a key's sha256 is
kept). Without keys, only programs on this machine are answered: the request must be
addressed to a loopback name (Host header) and not sent by a web page from elsewhere (Origin
header), so a web page you visit cannot reach the service, not even by DNS rebinding."""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
from dataclasses import dataclass
from typing import Annotated
from urllib.parse import urlsplit

from fastapi import Depends, Request
from starlette.datastructures import Headers

from .models import Models
from .store import APIError, Store
from .worker import Worker

MAX_JSON_BYTES = 1_000_000  # a JSON body: a job or a chat; far more than either needs
MULTIPART_OVERHEAD = 1_000_000  # an upload's body: the file, plus its form fields and headers


@dataclass(frozen=True)
class Service:
    """One service's parts and limits, which its routes share (app.state.service)."""
    store: Store
    worker: Worker
    models: Models
    key_hashes: frozenset[str]  # the API keys' sha256; empty: no keys, this machine only
    max_file_mb: float          # the largest upload
    max_storage_mb: float       # what one key's files may take together
    max_jobs_per_key: int       # unfinished jobs one key may have

    @property
    def upload_limit(self) -> int:
        return int(self.max_file_mb * 1e6)

    def body_limit(self, path: str) -> int:
        return self.upload_limit + MULTIPART_OVERHEAD if path == "/v1/files" \
            else MAX_JSON_BYTES


def the_service(request: Request) -> Service:
    return request.app.state.service


Parts = Annotated[Service, Depends(the_service)]


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def host_of(url: str) -> str:
    """The host name of a Host or Origin header (any port, IPv6 in brackets), or ''."""
    try:
        return urlsplit(url if "//" in url else f"//{url}").hostname or ""
    except ValueError:
        return ""


def key_hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def local_callers_only(request: Request) -> None:
    """Without keys, only programs on this machine may call: the request must be addressed
    to a loopback name, and not come from a web page of another origin (a page you visit
    could otherwise post to 127.0.0.1, or reach it by DNS rebinding)."""
    origin = request.headers.get("origin")
    if not is_loopback(host_of(request.headers.get("host", ""))) or \
            (origin is not None and not is_loopback(host_of(origin))):
        raise APIError(403, "Without API keys this service answers only programs on its "
                       "own machine (Host and Origin must be 127.0.0.1, localhost or "
                       "[::1]); start it with keys to share it", code="forbidden_host")


def caller(request: Request, service: Parts) -> str:
    """The caller: a key's hash, or 'local' where the service needs no keys."""
    header = request.headers.get("authorization", "")
    key = header[7:].strip() if header.lower().startswith("bearer ") else ""
    if not service.key_hashes:
        return "local"
    digest = key_hash(key) if key else ""
    if not any(hmac.compare_digest(digest, h) for h in service.key_hashes):
        raise APIError(401, "Incorrect API key provided. This service needs "
                       "'Authorization: Bearer KEY' with a key it was given.",
                       code="invalid_api_key", param=None)
    return digest


Caller = Annotated[str, Depends(caller)]


def org_of(who: str) -> tuple[str, str]:
    """(organization id, the org part of an ft: model name) for a caller."""
    return ("org-local", "local") if who == "local" else (f"org-{who[:12]}", who[:12])


def listing(items: list[dict], **extra) -> dict:
    return {"object": "list", "data": items, "has_more": False, **extra}


def page(items: list[dict], after: str | None, limit: int) -> dict:
    ids = [i["id"] for i in items]
    start = ids.index(after) + 1 if after in ids else 0
    chosen = items[start:start + limit]
    return listing(chosen) | {"has_more": start + limit < len(items)}


class BodyLimit:
    """ASGI middleware: a request body larger than max_bytes(path) is refused with 413, in
    OpenAI's error shape, as soon as that is known: at once when Content-Length says so,
    otherwise (a chunked body) when the bytes read so far pass the limit, so an oversized body
    is never stored whole. (FastAPI's own max_body_size works the same way but answers a
    declared size in plain text, which the SDK cannot show as an OpenAI error.)"""

    def __init__(self, app, max_bytes):
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        limit = self.max_bytes(scope["path"])
        too_large = APIError(413, f"The request body is larger than this service accepts for "
                             f"{scope['path']} ({limit / 1e6:g} MB)", code="request_too_large")
        declared = Headers(scope=scope).get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            return await too_large.response()(scope, receive, send)
        read = 0

        async def receive_counted():
            nonlocal read
            message = await receive()
            read += len(message.get("body", b""))
            if read > limit:
                raise too_large  # inside the endpoint: answered by its APIError handler
            return message

        await self.app(scope, receive_counted, send)
