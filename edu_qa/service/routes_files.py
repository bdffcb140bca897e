"""/v1/files: upload a JSONL file for fine-tuning, list, retrieve, read back and delete a
key's files (its uploads, and its jobs' results files). An upload is measured while it is
read (BodyLimit): one over --max-file-mb is refused (413) before it is stored, and one key's
files together stay within --max-storage-mb."""

from __future__ import annotations

import base64
from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, Response
from openai.types import FileDeleted

from .store import OPEN_STATES, RESULTS_PURPOSE, APIError
from .web import Caller, Parts, page

router = APIRouter(prefix="/v1/files")


@router.post("")
async def upload(request: Request, who: Caller, service: Parts):
    store = service.store
    too_large = APIError(413, f"File is larger than this service's limit of "
                         f"{service.max_file_mb} MB", code="file_too_large", param="file")
    try:  # BodyLimit stops reading at upload_limit + MULTIPART_OVERHEAD bytes
        form = await request.form(max_files=1, max_fields=10)
    except APIError:
        raise too_large from None
    except Exception as err:  # not multipart, or a broken body
        raise APIError(400, f"the body must be multipart/form-data with 'file' and "
                       f"'purpose' ({err})") from None
    file, purpose = form.get("file"), form.get("purpose")
    if not hasattr(file, "read"):
        raise APIError(400, "'file' is missing: send the JSONL file as 'file'", param="file")
    if purpose != "fine-tune":
        raise APIError(400, f"purpose {purpose!r} is not served here; use 'fine-tune'",
                       param="purpose")
    raw = await file.read(service.upload_limit + 1)
    if len(raw) > service.upload_limit:
        raise too_large
    with store.lock:
        used = sum(r["object"]["bytes"] for r in store.files.values() if r["owner"] == who)
        if used + len(raw) > service.max_storage_mb * 1e6:
            raise APIError(429, f"This key's files would take more than this service's "
                           f"storage quota of {service.max_storage_mb} MB ({used / 1e6:.3g} "
                           "MB used); delete files you no longer need (DELETE /v1/files/ID)",
                           code="insufficient_quota", kind="insufficient_quota", retry=False)
        return store.add_file(who, Path(file.filename or "upload.jsonl").name, purpose, raw)


@router.get("")
def list_files(who: Caller, service: Parts, purpose: str | None = None, limit: int = 10000,
               after: str | None = None, order: str = "desc"):
    items = [r["object"] for r in service.store.files.values() if r["owner"] == who
             and (purpose is None or r["object"]["purpose"] == purpose)]
    items.sort(key=lambda o: o["created_at"], reverse=order == "desc")
    result = page(items, after, limit)
    ids = [o["id"] for o in result["data"]]
    return result | {"first_id": ids[0] if ids else None, "last_id": ids[-1] if ids else None}


@router.get("/{file_id}")
def get_file(file_id: str, who: Caller, service: Parts):
    return service.store.owned(service.store.files, file_id, who, "file")["object"]


@router.get("/{file_id}/content")
def file_content(file_id: str, who: Caller, service: Parts):
    record = service.store.owned(service.store.files, file_id, who, "file")
    path = service.store.file_path(file_id)
    if record["object"]["purpose"] == RESULTS_PURPOSE:
        # OpenAI sends a job's results CSV base64-encoded, and the cookbook's notebooks
        # decode it (base64.b64decode(client.files.content(id).read())): so does this service
        return Response(base64.b64encode(path.read_bytes()), media_type="text/plain")
    return FileResponse(path, media_type="application/octet-stream")


@router.delete("/{file_id}")
def delete_file(file_id: str, who: Caller, service: Parts):
    store = service.store
    with store.lock:
        store.owned(store.files, file_id, who, "file")
        users = [r["object"]["id"] for r in store.jobs.values()
                 if r["object"]["status"] in OPEN_STATES and file_id in
                 (r["object"]["training_file"], r["object"]["validation_file"])]
        if users:  # a restarted service reads the file again to validate the job
            raise APIError(400, f"File {file_id} is used by job {users[0]}, which has not "
                           "finished; cancel the job or wait for it", code="file_in_use",
                           param="file_id")
        path = store.file_path(file_id)  # while its record says where it is
        del store.files[file_id]
        store.remove("files", file_id)
        path.unlink(missing_ok=True)
    return FileDeleted(id=file_id, object="file", deleted=True).model_dump(mode="json")
