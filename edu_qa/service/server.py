"""Running the service: in a background thread of the caller (serve(), as the OpenAI script
and the tests do), or on its own (main(), python finetune_service.py).

It binds to 127.0.0.1 unless --host says otherwise, and on any other address it refuses to
start without API keys. Keys are read from a file or $FINETUNE_SERVICE_API_KEYS, never from
the command line, and no message ever shows one."""

from __future__ import annotations

import argparse
import contextlib
import os
import socket
import sys
import threading
import time
from pathlib import Path

import uvicorn

import edu_qa
from edu_qa.recipe import EMBEDDED_ID

from .app import create_app
from .models import BASE_MODELS, OPENAI_MODELS
from .store import DEFAULT_DATA_DIR
from .web import is_loopback


# The service on its own (main) answers chats in one CPU thread. Jobs train in another
# process, on torch's default threads; chat's own threads would each wait for the others at
# every token while training holds the cores, and a chat would take as long as many training
# steps. With one thread it answers about as fast as with no job training (measured on 2
# cores: benchmarks/README.md, "A class at once"). serve() leaves its caller's threads alone.
CHAT_THREADS = 1


def check_host(host: str, api_keys: list[str] | None) -> None:
    if not is_loopback(host) and not api_keys:
        raise edu_qa.UserError(f"--host {host} would let anyone on the network train and call "
                               "models here; give API keys (--api-keys-file FILE or "
                               "$FINETUNE_SERVICE_API_KEYS) or stay on 127.0.0.1")


@contextlib.contextmanager
def serve(host: str = "127.0.0.1", port: int = 0, **app_options):
    """Run the service in a background thread of this process; yields its base URL
    (http://HOST:PORT/v1, port 0 = a free one) and stops it on exit. Jobs train in a child
    process started with multiprocessing's spawn, which imports the calling program's main
    module again: a program that calls serve() does so under `if __name__ == "__main__":`."""
    check_host(host, app_options.get("api_keys"))
    app = create_app(**app_options)  # first: it locks the data directory
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False,
                                           lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    try:
        try:
            sock.bind((host, port))
        except OSError as err:
            raise edu_qa.UserError(f"cannot listen on {host}:{port}: {err.strerror}") from None
        thread.start()
        deadline = time.monotonic() + 30
        while not server.started and thread.is_alive() and time.monotonic() < deadline:
            time.sleep(0.02)
        if not server.started:
            raise edu_qa.UserError("the local fine-tuning service did not start")
        shown = f"[{host}]" if ":" in host else host
        yield f"http://{shown}:{sock.getsockname()[1]}/v1"
    finally:
        server.should_exit = True
        if thread.is_alive():
            thread.join(timeout=5)
        sock.close()
        app.state.worker.stop()
        app.state.store.close()


def read_keys(path: str | None) -> list[str]:
    """Keys from $FINETUNE_SERVICE_API_KEYS (comma-separated) and the keys file (one per
    line; blank lines and # comments skipped). No message ever shows a key, nor the path (a
    key typed where the path goes would be shown)."""
    keys = os.environ.get("FINETUNE_SERVICE_API_KEYS", "").split(",")
    if path:
        try:
            keys += Path(path).read_text(encoding="utf-8").splitlines()
        except OSError as err:
            raise edu_qa.UserError(f"cannot read the file given as --api-keys-file: "
                                   f"{err.strerror}") from None
        except UnicodeDecodeError:
            raise edu_qa.UserError("the file given as --api-keys-file is not UTF-8 text") \
                from None
    return [k.strip() for k in keys if k.strip() and not k.strip().startswith("#")]


def name_to_value(items: list[str], option: str, form: str) -> dict[str, str]:
    """An option given any number of times as NAME=VALUE -> {NAME: VALUE}."""
    found = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name or not value:
            raise edu_qa.UserError(f"{option} {item!r}: expected {form}")
        found[name] = value
    return found


def parse_args(argv=None, usage: str = __doc__) -> argparse.Namespace:
    """The command line; usage: the help's first paragraph, then its epilog (the entry
    point, finetune_service.py, gives its own docstring)."""
    # allow_abbrev=False: '--api-key SECRET' must not be taken for '--api-keys-file SECRET'
    parser = argparse.ArgumentParser(description=usage.split("\n\n")[0],
                                     epilog=usage.split("\n\n", 1)[1], allow_abbrev=False,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to listen on; anything but loopback needs API keys")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--data-dir", default=str(DEFAULT_DATA_DIR),
                        help="uploaded files, jobs, events and trained adapters")
    parser.add_argument("--api-keys-file", help="one API key per line; with keys, every "
                        "request needs one and each key sees only its own objects")
    parser.add_argument("--max-file-mb", type=float, default=50,
                        help="largest upload accepted from one client (MB)")
    parser.add_argument("--max-storage-mb", type=float, default=50,
                        help="most that one key's uploaded files may take together (MB)")
    parser.add_argument("--max-jobs-per-key", type=int, default=4,
                        help="unfinished jobs one key may have queued or running")
    parser.add_argument("--base-model", action="append", default=[], metavar="ID=SOURCE",
                        help="also fine-tune SOURCE (a folder or Hugging Face id) as model ID; "
                        f"'{EMBEDDED_ID}' (the embedded SmolLM2-135M-Instruct) is always served")
    parser.add_argument("--serve-as", action="append", default=[], metavar="NAME=BASE",
                        help="train the base model BASE when a job asks for OpenAI's model "
                        f"NAME (default: {', '.join(OPENAI_MODELS)} train '{EMBEDDED_ID}')")
    parser.add_argument("--gpu", action="store_true",
                        help="train on a GPU when there is one (the recipe's --execute)")
    args, unknown = parser.parse_known_args(argv)
    if unknown:  # argparse would repeat them all, and one may be a key: name the options only
        options = [word.split("=")[0] for word in unknown if word.startswith("--")]
        parser.error(f"unrecognized arguments: {' '.join(options) or '(not shown)'}; values "
                     "are not repeated here, in case one is a key (keys are read only from "
                     "--api-keys-file or $FINETUNE_SERVICE_API_KEYS)")
    return args


def main(argv=None, usage: str = __doc__) -> None:
    args = parse_args(argv, usage)
    bases = BASE_MODELS | name_to_value(args.base_model, "--base-model", "ID=SOURCE")
    serve_as = name_to_value(args.serve_as, "--serve-as", "NAME=BASE")
    keys = read_keys(args.api_keys_file)
    import torch  # here, not at the top: --help and serve() do not pay for it
    torch.set_num_threads(CHAT_THREADS)
    with serve(args.host, args.port, data_dir=args.data_dir, base_models=bases, api_keys=keys,
               max_file_mb=args.max_file_mb, max_jobs_per_key=args.max_jobs_per_key,
               max_storage_mb=args.max_storage_mb, serve_as=serve_as, use_gpu=args.gpu) as url:
        print(f"serving OpenAI's fine-tuning API at {url} | models: {', '.join(bases)} | "
              f"keys: {len(keys) or 'none (loopback only)'} | data: {args.data_dir} | "
              "Ctrl-C stops", flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            print("stopped", file=sys.stderr)
