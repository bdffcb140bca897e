"""The dataset: one QA file, validated line by line, split into train, dev and test.

    load_qa()            the file, or 'FILE:LINE: what is wrong and how to fix it'
    training_subset()    --train-size N: a seeded sample, subjects in proportion
    chat_messages()      a question as the plain chat prompt every method starts from
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import random
from collections import Counter, defaultdict
from pathlib import Path

from .cli import UserError, say
from .scoring import normalize

HERE = Path(__file__).resolve().parents[1]  # the project folder
DATA_FILE = HERE / "small_edu_qa.jsonl"
SPLITS = ("train", "dev", "test")
SPLIT_FRACTIONS = (0.6, 0.2, 0.2)  # used only for records whose file gives no split
MAX_LINE_BYTES = 100_000  # one question and answer; a longer line is a mistaken file

# One system prompt for every method, so that only the method differs between the scripts.
SYSTEM_PROMPT = (
    "You are a concise tutor. Answer the student's question in one or two sentences, "
    "starting with the direct answer."
)


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
            raise UserError(f"{where}: invalid JSON ({err.msg}: column {err.colno}); "
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


def chat_messages(question: str) -> list[dict]:
    """The messages every method sends for one question: the shared system prompt + question."""
    return [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": question}]


def print_data_summary(console, data: "QADataset", train: list) -> None:
    """The splits, and the training examples this run learns from, by subject."""
    say(console, "data: ", f"{data.path.name} sha256 {data.sha256[:12]} | train {len(train)} "
        f"(of {len(data.split('train'))}) | dev {len(data.split('dev'))} | "
        f"test {len(data.split('test'))}")
    counts = by_subject(train)
    if len(train) == len(data.split("train")) and len(set(counts.values())) == 1:
        say(console, "training examples used: ", f"all, {next(iter(counts.values()))} from "
            f"each of {len(counts)} subjects")
    else:
        sample = "all" if len(train) == len(data.split("train")) else \
            "a seeded sample, subjects in proportion"
        say(console, f"training examples used ({sample}): ",
            ", ".join(f"{s} {n}" for s, n in counts.items()))
