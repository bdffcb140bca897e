"""The shipped dataset and the loader every script uses for --data."""

import json
import subprocess
import sys
from collections import Counter

import pytest

import edu_qa
from conftest import ROOT


def test_shipped_dataset_is_sound():
    data = edu_qa.load_qa(edu_qa.DATA_FILE)
    assert len(data.records) >= 100
    subjects = Counter(r.subject for r in data.records)
    assert len(subjects) >= 6
    # split sizes as documented in README: 72 / 48 / 152, 9 / 6 / 19 per subject (a test
    # split large enough that a paired test can tell methods apart)
    assert data.sizes() == {"train": 72, "dev": 48, "test": 152}
    for subject in subjects:
        per = Counter(r.split for r in data.records if r.subject == subject)
        assert per == {"train": 9, "dev": 6, "test": 19}, subject
    questions = [edu_qa.normalize(r.question) for r in data.records]
    assert len(set(questions)) == len(questions), "duplicate questions"
    for r in data.records:
        assert r.key, f"line {r.line}: no key"
        assert edu_qa.is_correct(r.answer, r.key, r.answer), f"line {r.line}: key not in answer"
        assert len(r.answer.split()) <= 40, f"line {r.line}: answer over 40 words"
        assert 1 <= max(len(k.split()) for k in r.key.split("|")) <= 5, f"line {r.line}: key"


def test_no_key_echoes_its_question():
    """A key made of the question's own words ('light' for 'Which travels faster, sound or
    light?') passes wrong answers that repeat the question ('Sound travels faster than
    light')."""
    for r in edu_qa.load_qa(edu_qa.DATA_FILE).records:
        question = f" {edu_qa.normalize(r.question)} "
        for alt in r.key.split("|"):
            assert f" {edu_qa.normalize(alt)} " not in question, \
                f"line {r.line}: key {alt!r} is in the question"


def write(tmp_path, content: bytes | str, name="qa.jsonl"):
    path = tmp_path / name
    path.write_bytes(content.encode("utf-8") if isinstance(content, str) else content)
    return path


GOOD = '{"question": "What is 2+2?", "answer": "Four.", "key": "4", "split": "train"}\n' \
       '{"question": "What is H2O?", "answer": "Water.", "split": "test"}\n' \
       '{"question": "What is NaCl?", "answer": "Salt.", "split": "dev"}\n'


def test_bom_and_blank_lines_are_accepted(tmp_path):
    path = write(tmp_path, b"\xef\xbb\xbf" + GOOD.replace("\n", "\n\n").encode())
    data = edu_qa.load_qa(path)
    assert [r.question for r in data.records] == ["What is 2+2?", "What is H2O?",
                                                   "What is NaCl?"]
    assert [r.line for r in data.records] == [1, 3, 5]
    assert data.records[1].key is None and data.records[1].subject == "general"


def test_missing_split_is_seeded_and_deterministic(tmp_path):
    lines = [json.dumps({"question": f"Question number {i}?", "answer": f"Answer {i}."})
             for i in range(50)]
    path = write(tmp_path, "\n".join(lines))
    first = [r.split for r in edu_qa.load_qa(path, seed=0).records]
    assert first == [r.split for r in edu_qa.load_qa(path, seed=0).records]
    assert Counter(first) == {"train": 30, "dev": 10, "test": 10}
    assert first != [r.split for r in edu_qa.load_qa(path, seed=1).records]


BAD = {
    "invalid JSON": ('{"question": "Q?", "answer": "A."}\n{"question": "Q2?", answer: 1}\n',
                     2, "invalid JSON (Expecting property name enclosed in double quotes: "
                        "column 21)"),
    "unterminated string": ('{"question": "Q?", "answer": "A."}\n{"question": "Q2?\n', 2,
                            "invalid JSON (Unterminated string starting at: column 14)"),
    "not an object": ('{"question": "Q?", "answer": "A."}\n["Q2?", "A2."]\n', 2,
                      "expected a JSON object"),
    "missing field": ('{"question": "Q?"}\n', 1, 'missing required field "answer"'),
    "blank field": ('{"question": "   ", "answer": "A."}\n', 1, 'field "question" is blank'),
    "non-string field": ('{"question": "Q?", "answer": 42}\n', 1,
                         'field "answer" must be a string'),
    "non-string key": ('{"question": "Q?", "answer": "A.", "key": ["A"]}\n', 1,
                       'field "key" must be a string'),
    "bad split name": ('{"question": "Q?", "answer": "A.", "split": "validation"}\n', 1,
                       'split "validation" is not one of'),
    "not UTF-8": (b'{"question": "Q?", "answer": "A."}\n{"question": "caf\xe9?", "answer": "A"}\n',
                  2, "not valid UTF-8"),
    "empty file": ("\n\n", 1, "the file is empty"),
    "question in two splits": ('{"question": "What is 2+2?", "answer": "4", "split": "train"}\n'
                               '{"question": "what is 2+2", "answer": "4", "split": "test"}\n',
                               2, "also on line 1"),
    "duplicate question": ('{"question": "Q?", "answer": "A.", "split": "train"}\n'
                           '{"question": "Q?", "answer": "B.", "split": "train"}\n', 2,
                           "duplicate question"),
    "no test split": ('{"question": "Q?", "answer": "A.", "split": "train"}\n'
                      '{"question": "R?", "answer": "B.", "split": "dev"}\n', 2,
                      "no record is in the test split"),
    "no dev split": ('{"question": "Q?", "answer": "A.", "split": "train"}\n'
                     '{"question": "R?", "answer": "B.", "split": "test"}\n', 2,
                     "no record is in the dev split"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_input_names_file_and_line(tmp_path, case):
    content, line, message = BAD[case]
    path = write(tmp_path, content)
    with pytest.raises(edu_qa.UserError) as err:
        edu_qa.load_qa(path)
    assert str(err.value).startswith(f"{path}:{line}: ")
    assert message in str(err.value)


def test_script_rejects_bad_file_with_exit_2_and_no_traceback(tmp_path):
    path = write(tmp_path, BAD["invalid JSON"][0])
    results = tmp_path / "results"
    proc = subprocess.run([sys.executable, "huggingface_lora.py", "--data", str(path),
                           "--results-dir", str(results)], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 2
    assert f"{path}:2: invalid JSON" in proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    assert not results.exists(), "nothing is written for a bad input"


def test_missing_data_file(tmp_path):
    with pytest.raises(edu_qa.UserError, match="cannot read the data file"):
        edu_qa.load_qa(tmp_path / "nope.jsonl")
