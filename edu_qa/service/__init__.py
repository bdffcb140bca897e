"""The local fine-tuning service: OpenAI's fine-tuning API, served on this machine, training
for real (how to run it and what it serves: finetune_service.py, its entry point). One job per
file:

    store.py          files and jobs on disk under the data directory, its lock, ids, errors
    worker.py         a job's way: validated, queued, trained (one at a time), or cancelled
    fair_queue.py     the training queue: each key's jobs in order, the keys taking turns
    training_process.py  the child process that trains jobs, and its messages to the worker
    training.py       one job's LoRA training, with the recipe's settings (edu_qa/recipe.py)
    models.py         the models a key may call or train; chat models loaded on first use
    bodies.py         the JSON bodies accepted (pydantic models) and their refusals
    web.py            what the routes share: who is calling, body limits, list pages
    routes_files.py   /v1/files
    routes_jobs.py    /v1/fine_tuning/jobs
    routes_models.py  /v1/models and /v1/chat/completions
    app.py            create_app: the routers over one store, worker and set of models
    server.py         serve (in a thread of the caller), main (on its own), the keys

Layers run one way: the scripts (and finetune_service.py) import this package, this package
imports edu_qa's other modules and the libraries, and nothing here imports a script.
"""

from edu_qa.recipe import EMBEDDED_ID

from .app import create_app
from .models import BASE_MODELS, OPENAI_MODELS, Models
from .server import check_host, main, parse_args, read_keys, serve
from .store import (DEFAULT_DATA_DIR, LOCK_FILE, OPEN_STATES, TERMINAL_STATES, APIError, Store,
                    model_folder)
from .web import MAX_JSON_BYTES, MULTIPART_OVERHEAD, is_loopback
from .worker import Worker

__all__ = ["EMBEDDED_ID", "create_app", "BASE_MODELS", "OPENAI_MODELS", "Models", "check_host",
           "main", "parse_args", "read_keys", "serve", "DEFAULT_DATA_DIR", "LOCK_FILE",
           "OPEN_STATES", "TERMINAL_STATES", "APIError", "Store", "model_folder",
           "MAX_JSON_BYTES", "MULTIPART_OVERHEAD", "is_loopback", "Worker"]
