"""A local fine-tuning service that speaks OpenAI's API and really trains.

    python -m finetune_service --port 8000          # this machine only (127.0.0.1), no keys
    python -m finetune_service --host 0.0.0.0 --port 8000 --api-keys-file keys.txt  # a class

openai_finetune.py starts one in its own process on 127.0.0.1 (a free port) when it runs
without --execute, so the cloud workflow (upload a file, start a job, watch its events and
checkpoints, call the ft: model) runs for real with the official SDK and no OpenAI account.
Point any OpenAI client at it with base_url="http://HOST:PORT/v1".

What it serves, with OpenAI's request and response shapes:
    POST /v1/files (purpose=fine-tune), GET /v1/files, GET|DELETE /v1/files/{id},
    GET /v1/files/{id}/content
    POST /v1/fine_tuning/jobs, GET /v1/fine_tuning/jobs (list, metadata filter),
    GET /v1/fine_tuning/jobs/{id}, .../events, .../checkpoints, POST .../cancel
    GET /v1/models, GET /v1/models/{id}, DELETE /v1/models/{id} (your own ft: models),
    POST /v1/chat/completions (the base models and every ft: model)
There are no /docs, /redoc or /openapi.json pages: OpenAI's own API reference describes
these routes.

A job goes validating_files -> queued -> running -> succeeded | failed | cancelled. A file
that passes validation (OpenAI's format rules, and every example rendered in the base model's
chat template) is one training can use. Training is the LoRA recipe of huggingface_lora.py,
with its settings (edu_qa/recipe.py), one job at a time, in a process of its own, so that chat
and the API keep answering meanwhile. Queued jobs take turns by key: each key's jobs in the
order they came, the key served longest ago first, so one key's ten jobs do not queue ahead
of a class. A cancelled job is "cancelled" at once and its training stops at the next step.
OpenAI's hyperparameters map onto it like this:
    n_epochs                 -> epochs; "auto": OpenAI's rule (chat_format.default_epochs)
    batch_size               -> batch_size; "auto": the recipe's default
    learning_rate_multiplier -> times the recipe's learning rate; "auto": 1
    seed                     -> seed (LoRA's initial weights, data order); a job
                                without one gets one, reported on the job
OpenAI's model names (gpt-3.5-turbo, gpt-4o-mini, gpt-4o, gpt-4.1 and their dated versions)
are accepted too, so code written for OpenAI runs unchanged: each trains a local stand-in,
the first base model unless --serve-as NAME=BASE says otherwise. The job keeps the name asked
for, and its first event says which local model really trains.
An event is written for every logged training loss and every validation loss, and a
checkpoint (a LoRA adapter, callable as ft:...:ckpt-step-N) at the end of every epoch. A job
that succeeds lists one file in result_files, as at OpenAI: step_metrics.csv (purpose
fine-tune-results; step, train_loss, train_accuracy, valid_loss, valid_mean_token_accuracy,
a row per step), whose content comes base64-encoded, as OpenAI sends it.
Chat answers are greedy, whatever temperature is asked for: the lesson compares models, not
samples. Everything lives under --data-dir, so a restarted service keeps its files, jobs and
models, and queues again a job that was training when it stopped (first, then the others in
their turns). One service at a time may use a data directory: a second one refuses to start,
naming the process that holds it.

Sharing one machine's service with a class: it binds to 127.0.0.1 unless --host says
otherwise, and on any other address it refuses to start without API keys. Without keys it
answers only requests addressed to a loopback name (Host header) and not sent by a web page
from elsewhere (Origin header): a web page you visit cannot reach it, not even by DNS
rebinding. With keys, a request without a valid "Authorization: Bearer KEY" gets 401, as at
OpenAI; each key sees only its own files, jobs and models; each key may queue at most
--max-jobs-per-key unfinished jobs, upload files of at most --max-file-mb and keep at most
--max-storage-mb of files. A JSON body may be at most 1 MB; an oversized body is refused
(413) before it is stored. Keys are read from a file (one per line; blank lines and lines
starting with # are skipped) or from $FINETUNE_SERVICE_API_KEYS (comma-separated), never from
the command line, and only their sha256 is kept.

The code is the package edu_qa/service (its __init__.py lists what each file does); this file
is its entry point, and keeps the names that callers import from it.
"""

import functools
import sys

import edu_qa
from edu_qa.service import (BASE_MODELS, DEFAULT_DATA_DIR, EMBEDDED_ID, LOCK_FILE,
                            OPENAI_MODELS, create_app, is_loopback, main, parse_args,
                            read_keys, serve)

# the names callers import from here (import finetune_service), the package's own
__all__ = ["BASE_MODELS", "DEFAULT_DATA_DIR", "EMBEDDED_ID", "LOCK_FILE", "OPENAI_MODELS",
           "create_app", "is_loopback", "main", "parse_args", "read_keys", "serve"]

if __name__ == "__main__":
    # --help shows this file's docstring
    sys.exit(edu_qa.run(functools.partial(main, usage=__doc__)))
