"""A class at once: the local fine-tuning service shared by 30 students, each with a key.

    python benchmarks/service_class.py                # 30 students on the embedded model
    python benchmarks/service_class.py --students 4 --long-after 10 --no-readme  # the path

It starts finetune_service.py in its own process on 127.0.0.1 with one key per student (a keys
file) and its own data directory (outputs/service_class/, with the service's log), then runs
the students at once, each in a thread with its own key and the official openai SDK (no
retries: every failed request counts): upload a small training file (--examples questions of
small_edu_qa.jsonl's train split, each with the first sentence of its answer, in chat format),
create a job (1 epoch), then chat with the base model --chats times while the jobs train, and
wait for the job. Then, while jobs still train, two students measure one more figure: a
one-message chat sent while the other sends a 10,000-message request, which the service must
refuse at once (400 context_length_exceeded) without holding the short one.

Figures: requests that failed and jobs that did not succeed (both must be 0), chat latency
(median, p95) counting the chats sent while a job trained, how long the queue took to drain
(the first job created to the last finished), and that one-message chat's latency. The table
is printed and written into benchmarks/README.md, section "A class at once"."""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import shutil
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import edu_qa  # noqa: E402
from edu_qa.recipe import EMBEDDED_ID  # noqa: E402

README = ROOT / "benchmarks" / "README.md"
START, END = "<!-- service_class.py: start -->", "<!-- service_class.py: end -->"
LONG_MESSAGES = 10_000  # the oversized request: far past the model's context


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_service(data_dir: Path, keys: list[str]) -> tuple[subprocess.Popen, str]:
    """finetune_service.py in its own process, as a class would run it; (process, base URL)."""
    from openai import OpenAI
    keys_file = data_dir / "keys.txt"
    keys_file.write_text("\n".join(keys) + "\n")
    port = free_port()
    proc = subprocess.Popen([sys.executable, "finetune_service.py", "--port", str(port),
                             "--api-keys-file", str(keys_file), "--data-dir",
                             str(data_dir / "service"), "--max-jobs-per-key", "1"],
                            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=data_dir.joinpath(
                                "service.log").open("w"))
    url = f"http://127.0.0.1:{port}/v1"
    client = OpenAI(base_url=url, api_key=keys[0], max_retries=0, timeout=5)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            client.models.list()
            return proc, url
        except Exception:
            if proc.poll() is not None:
                break
            time.sleep(0.5)
    proc.kill()
    raise RuntimeError(f"the service did not start; see {data_dir / 'service.log'}")


def training_file(student: int, n: int) -> bytes:
    """n questions of the train split, a different slice for each student, as chat examples
    with the first sentence of the answer: short examples, so that a job is tiny."""
    train = edu_qa.load_qa().split("train")
    rows = [train[(student * n + i) % len(train)] for i in range(n)]
    return "".join(json.dumps({"messages": [
        {"role": "user", "content": ex.question},
        {"role": "assistant", "content": ex.answer.split(". ")[0].rstrip(".") + "."}]}) + "\n"
        for ex in rows).encode()


class Class:
    """The students' shared record: chats, errors, jobs."""

    def __init__(self):
        self.lock = threading.Lock()
        self.chats: list[tuple[float, float]] = []  # (sent at, seconds), wall clock
        self.errors: list[str] = []
        self.jobs: dict[int, object] = {}  # student -> the finished job
        self.created: list[float] = []

    def error(self, student: int, what: str, err: Exception) -> None:
        with self.lock:
            self.errors.append(f"student {student}: {what}: {type(err).__name__}: {err}")


def student(i: int, url: str, key: str, args, record: Class, go: threading.Barrier) -> None:
    """Upload, create a job, chat while it waits and trains, then wait for it to end."""
    from openai import OpenAI
    client = OpenAI(base_url=url, api_key=key, max_retries=0, timeout=600)
    question = edu_qa.load_qa().split("test")[i % 24].question
    go.wait()  # everyone at once
    try:
        file = client.files.create(file=(f"student-{i}.jsonl", training_file(i, args.examples)),
                                   purpose="fine-tune")
        job = client.fine_tuning.jobs.create(
            model=EMBEDDED_ID, training_file=file.id, suffix=f"student-{i}",
            hyperparameters={"n_epochs": 1, "batch_size": args.batch_size})
        with record.lock:
            record.created.append(time.time())
    except Exception as err:
        return record.error(i, "upload or create", err)
    time.sleep(i % 10)  # the chats of a class do not all come at the same second
    for _ in range(args.chats):
        sent = time.time()
        try:
            client.chat.completions.create(model=EMBEDDED_ID, max_tokens=args.max_tokens,
                                           messages=edu_qa.chat_messages(question))
            with record.lock:
                record.chats.append((sent, time.time() - sent))
        except Exception as err:
            record.error(i, "chat", err)
        time.sleep(args.chat_gap)
    while True:
        try:
            job = client.fine_tuning.jobs.retrieve(job.id)
        except Exception as err:
            record.error(i, "retrieve", err)
            time.sleep(2)
            continue
        if job.status in ("succeeded", "failed", "cancelled"):
            break
        time.sleep(2)
    with record.lock:
        record.jobs[i] = (job, client)


def long_and_short(url: str, keys: list[str], record: Class) -> dict:
    """A 10,000-message request from one key and, 0.1 s later, a one-message chat from
    another: how long each took, and what the long one was answered."""
    import openai
    long_client = openai.OpenAI(base_url=url, api_key=keys[0], max_retries=0, timeout=600)
    short_client = openai.OpenAI(base_url=url, api_key=keys[1], max_retries=0, timeout=600)
    found = {}

    def send_long():
        start = time.monotonic()
        try:
            long_client.chat.completions.create(
                model=EMBEDDED_ID, max_tokens=16,
                messages=[{"role": "user", "content": "hi"}] * LONG_MESSAGES)
            found["long"] = "answered (not refused)"
        except openai.BadRequestError as err:
            found["long"] = f"{err.status_code} {err.code}"
        except Exception as err:
            found["long"] = f"{type(err).__name__}"
        found["long_s"] = time.monotonic() - start

    thread = threading.Thread(target=send_long)
    thread.start()
    time.sleep(0.1)
    start = time.monotonic()
    try:
        short_client.chat.completions.create(model=EMBEDDED_ID, max_tokens=16, messages=[
            {"role": "user", "content": "What is the capital of France?"}])
    except Exception as err:
        record.error(-1, "the one-message chat", err)
    found["short_s"] = time.monotonic() - start
    thread.join()
    return found


def training_windows(jobs: dict) -> list[tuple[int, int]]:
    """(started, finished) of each job, wall clock seconds, from its events."""
    windows = []
    for job, client in jobs.values():
        started = [e.created_at for e in client.fine_tuning.jobs.list_events(job.id, limit=100)
                   if e.message == "Fine-tuning job started"]
        if started and job.finished_at:
            windows.append((min(started), job.finished_at))
    return windows


def percentile(values: list[float], p: int) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[p - 1]


def run(args) -> dict:
    edu_qa.embedded_model_folder()  # converted once, before anything is timed
    load_before = os.getloadavg()[0]  # other programs on the machine move every figure
    keys = [f"sk-student-{i:02d}-{os.urandom(6).hex()}" for i in range(args.students)]
    record = Class()
    out = ROOT / "outputs" / "service_class"  # the service's data and log, kept to read
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    proc, url = start_service(out, keys)
    try:
        go = threading.Barrier(args.students)
        threads = [threading.Thread(target=student, args=(i, url, key, args, record, go))
                   for i, key in enumerate(keys)]
        started = time.time()
        for thread in threads:
            thread.start()
        while len(record.created) + len(record.errors) < args.students and \
                time.time() - started < 300:
            time.sleep(0.2)
        time.sleep(args.long_after)  # the first jobs are training by then
        pair = long_and_short(url, keys, record)
        for thread in threads:
            thread.join()
        windows = training_windows(record.jobs)
    finally:
        proc.terminate()
        proc.wait(30)
    training = [s for sent, s in record.chats
                if any(a <= sent + s / 2 <= b + 1 for a, b in windows)]
    jobs = [job for job, _ in record.jobs.values()]
    finished = [j.finished_at for j in jobs if j.finished_at]
    return {"errors": record.errors, "succeeded": sum(j.status == "succeeded" for j in jobs),
            "failed_jobs": [f"{j.id}: {j.status} {j.error}" for j in jobs
                            if j.status != "succeeded"],
            "chats": len(record.chats), "training_chats": len(training),
            "median": statistics.median(training) if training else None,
            "p95": percentile(training, 95) if len(training) >= 2 else None,
            "drain": max(finished) - min(record.created) if finished and record.created
            else None, "load": (load_before, os.getloadavg()[0]), **pair}


def table(args, found: dict) -> str:
    facts = edu_qa.machine()
    versions = edu_qa.library_versions("torch", "transformers", "peft", "openai", "fastapi")
    errors = len(found["errors"]) + len(found["failed_jobs"])
    s = lambda v: "-" if v is None else f"{v:.2f} s"  # noqa: E731
    return "\n".join([
        f"`python benchmarks/service_class.py --students {args.students}`, "
        f"{time.strftime('%Y-%m-%d')}: {facts['cpu']}, {facts['cores']} cores, "
        f"{facts['os']}; " + ", ".join(f"{k} {v}" for k, v in versions.items()) + "; "
        f"load average (1 min) {found['load'][0]:.1f} at the start, {found['load'][1]:.1f} at "
        "the end (a load above the cores: other programs shared them).",
        "",
        f"Settings: {args.students} keys, one student each; the embedded model "
        f"({EMBEDDED_ID}); each job {args.examples} examples (a question and the first "
        f"sentence of its answer), 1 epoch, batch_size {args.batch_size}; {args.chats} chats "
        f"per student ({args.max_tokens} tokens at most, {args.chat_gap:g} s apart); training "
        f"on torch's default threads; the 10,000-message request "
        f"{args.long_after:g} s after the last job was created.",
        "",
        "| figure | measured | target |",
        "|---|---|---|",
        f"| failed requests, and jobs that did not succeed | {errors} "
        f"({found['succeeded']}/{args.students} jobs succeeded) | 0 |",
        f"| chat latency while a job trains, median | {s(found['median'])} "
        f"({found['training_chats']} of {found['chats']} chats) | |",
        f"| chat latency while a job trains, p95 | {s(found['p95'])} | |",
        f"| queue drained ({args.students} jobs: first created to last finished) | "
        f"{s(found['drain'])} | |",
        f"| one-message chat while another key sends {LONG_MESSAGES:,} messages | "
        f"{s(found['short_s'])} (the long one: {found['long']} in "
        f"{found['long_s']:.2f} s) | ≤ 5 s |",
    ])


def write_readme(text: str) -> None:
    """The section's figures replaced (between its markers), or the section added."""
    readme = README.read_text(encoding="utf-8")
    block = f"{START}\n{text}\n{END}"
    if START in readme and END in readme:
        before, rest = readme.split(START, 1)
        readme = before + block + rest.split(END, 1)[1]
    else:
        readme = readme.rstrip("\n") + "\n\n## A class at once\n\n" + block + "\n"
    README.write_text(readme, encoding="utf-8")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--students", type=int, default=30, help="keys, one student each")
    parser.add_argument("--examples", type=int, default=10,
                        help="training examples per job (the service needs at least 10)")
    parser.add_argument("--batch-size", type=int, default=10,
                        help="one optimizer step per job with 10 examples: a tiny job")
    parser.add_argument("--chats", type=int, default=4, help="chats per student")
    parser.add_argument("--max-tokens", type=int, default=16, help="the most a reply may have")
    parser.add_argument("--chat-gap", type=float, default=10,
                        help="seconds between one student's chats")
    parser.add_argument("--long-after", type=float, default=90,
                        help="seconds after the jobs are created to send the long request: "
                        "after the students' chats, while jobs still train, so that its figure "
                        "is the long request's doing, not the class's chats'")
    parser.add_argument("--no-readme", action="store_true",
                        help="print the table only (a quick check: nothing written)")
    args = parser.parse_args(argv)
    if args.students < 2:
        parser.error("--students: at least 2 (two of them send the long and the short chat)")
    found = run(args)
    text = table(args, found)
    print(text)
    for line in found["errors"] + found["failed_jobs"]:
        print(edu_qa.visible(line), file=sys.stderr)
    if not args.no_readme:
        write_readme(text)


if __name__ == "__main__":
    main()
