"""Whatever file is given to --data, each script either goes on or stops with exit 2 and
'FILE[:LINE]: what is wrong', before anything is written; and text from the data is shown
exactly as written by every printer. Generated files (hypothesis) and named cases, through the
loader, the three scripts' steps 1-2 and the shared printers, with no model loaded."""

import io
import json
import re

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

import dspy_example
import edu_qa
import huggingface_lora as lora
import openai_finetune as oft
import report

MARKUP = ["[/b]", "[bold]", "a[i]", "[red]x[/red]", ":x:", "[[ ## answer ## ]]", "$x$", "|",
          "`", "\u2028", "\u2029", "\x1b[31m", "\x00", "\r", "\u202e", "\ud800"]
# any character, lone surrogates included (they can only arrive as JSON escapes)
text = st.text(st.characters(exclude_categories=()), max_size=40) | st.sampled_from(MARKUP) | \
    st.lists(st.sampled_from(MARKUP) | st.text(max_size=5), max_size=6).map("".join)
# text that is valid Unicode (no lone surrogate): what a file that loads can hold
core_text = st.text(max_size=40) | st.sampled_from(MARKUP[:-1]) | \
    st.lists(st.sampled_from(MARKUP[:-1]) | st.text(max_size=5), max_size=6).map("".join)
value = st.recursive(st.none() | st.booleans() | st.integers() | text,
                     lambda inner: st.lists(inner, max_size=3) |
                     st.dictionaries(text, inner, max_size=3), max_leaves=8)
record = st.fixed_dictionaries(
    {"question": text, "answer": text},
    optional={"key": text | value, "subject": text, "split": st.sampled_from(
        ["train", "dev", "test"]) | text, "extra": value})


@st.composite
def line(draw):
    kind = draw(st.sampled_from(["record"] * 6 + ["bytes", "deep", "huge", "blank", "json"]))
    if kind == "record":
        return json.dumps(draw(record), ensure_ascii=draw(st.booleans())).encode(
            "utf-8", "surrogatepass")
    if kind == "bytes":
        return draw(st.binary(max_size=40)).replace(b"\n", b" ")
    if kind == "deep":
        depth = draw(st.integers(1, 100_000))
        return b"[" * depth + b"]" * draw(st.integers(0, depth))
    if kind == "huge":
        return json.dumps({"question": "q" * draw(st.integers(90_000, 200_000)),
                           "answer": "a"}).encode()
    if kind == "json":
        return json.dumps(draw(value)).encode("utf-8", "surrogatepass")
    return draw(st.sampled_from([b"", b"   ", b"\r"]))


def good_line(i: int, split: str, q: str = "", a: str = "") -> bytes:
    return json.dumps({"question": f"Question {i}? {q}", "answer": f"Answer {i}. {a}",
                       "split": split}, ensure_ascii=False).encode("utf-8", "surrogatepass")


@st.composite
def qa_file(draw):
    """Sometimes a valid core of 12 records (so the later steps run on odd text), always
    generated lines mixed in."""
    lines = draw(st.lists(line(), max_size=6))
    if draw(st.integers(0, 2)):  # two times in three
        core = [good_line(i, ("train", "dev", "test")[i % 3], draw(core_text),
                          draw(core_text))
                for i in range(12)]
        lines = core + [ln for ln in lines if draw(st.integers(0, 3)) == 0]
    sep = draw(st.sampled_from([b"\n", b"\r\n"]))
    bom = draw(st.sampled_from([b"", b"\xef\xbb\xbf"]))
    return bom + sep.join(lines)


def recording_console():
    console = edu_qa.console()
    console.file = io.StringIO()
    console.width = 100_000  # no wrapping: what is printed can be searched whole
    return console


@pytest.fixture(scope="module")
def tokenizer():
    return edu_qa.load_tokenizer(edu_qa.EMBEDDED_MODEL)


def through_every_script(path, out, tokenizer):
    """Steps 1 and 2 of the three scripts, then the shared printers; returns what the
    consoles printed. A UserError must name the file (and line)."""
    printed = []
    for script, cfg in ((oft, oft.Config(data=str(path), output_dir=str(out / "oft"),
                                         dry_run=True)),
                        (lora, lora.Config(data=str(path), output_dir=str(out / "lora"))),
                        (dspy_example, dspy_example.Config(data=str(path),
                                                           output_dir=str(out / "dspy")))):
        console = recording_console()
        prepared = script.prepare_data(cfg, console)
        data, train, dev, test = prepared.data, prepared.train, prepared.dev, prepared.test
        if script is oft:
            try:
                formatted = oft.convert_format(cfg, data, train, dev, console)
            except edu_qa.UserError as err:  # OpenAI's own rules: before anything is written
                assert str(err).startswith(str(path)) and not (out / "oft").exists()
            else:  # every line of the training file reads back as what was converted
                lines = formatted.train_path.read_text(encoding="utf-8").split("\n")
                assert [json.loads(x) for x in lines if x] == formatted.examples
        elif script is lora:
            formatted = lora.convert_format(cfg, tokenizer, train, dev, console)
            assert len(formatted.train) == len(train)
        else:
            dspy_example.convert_format(cfg, train, console)
        printed.append(console.file.getvalue())
    console = recording_console()
    _, rows, _ = edu_qa.report_test_answers(console, test, [ex.answer for ex in test],
                                            [ex.question for ex in test], "step 5")
    edu_qa.show_changed_examples(console, rows, "every data row")
    results = edu_qa.new_results("huggingface_lora", lora.Config(data=str(path)), data,
                                 model=test[0].question, dry_run=False)
    results.update(before=edu_qa.score(test, [r["before"] for r in rows]),
                   after=edu_qa.score(test, [r["after"] for r in rows]), predictions=rows)
    edu_qa.save_and_compare(console, data, results, out / "results", None)
    block = report.markdown(data, edu_qa.current_results(data, out / "results"), [],
                            out / "results")
    assert "\n" not in report.md(test[0].question)
    printed.append(console.file.getvalue())
    return data, "".join(printed), block


def check(raw: bytes, tmp_path, tokenizer, note=lambda outcome: None):
    path = tmp_path / "data [x].jsonl"
    path.write_bytes(raw)
    out = tmp_path / "out"
    try:
        data, printed, _ = through_every_script(path, out, tokenizer)
    except edu_qa.UserError as err:
        message = str(err)
        assert re.match(re.escape(str(path)) + r"(:\d+)?: ", message), message
        edu_qa.visible(message).encode("utf-8")  # printable as it will be printed
        assert not out.exists()  # stopped before anything was written
        note(f"rejected: {message.split(': ', 1)[1][:24]}")
        return None
    note("accepted: through all three scripts and the printers")
    shown = printed.replace("\n", "")
    for ex in data.split("test"):  # every test question shows, as written (controls escaped)
        assert re.split(r"[\n\t]", edu_qa.visible(ex.question))[0].strip()[:30] in shown
    return data


@settings(max_examples=200, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                 HealthCheck.data_too_large])
@given(raw=qa_file())
def test_any_file_gives_a_result_or_a_file_line_message(raw, tmp_path_factory, tokenizer):
    check(raw, tmp_path_factory.mktemp("any"), tokenizer, note=event)


@pytest.mark.parametrize("name,lines,expected", [
    ("markup in a question", [], ("[/b] a[i] [bold]x", "")),
    ("unicode line separator in an answer", [], ("", "one\u2028two")),
    ("control characters", [], ("\x1b[31mred\x00", "")),
    ("a lone surrogate escape", [json.dumps({"question": "q\ud800", "answer": "a"}).encode()],
     ':13: field "question" holds the escape \\ud800'),
    ("deep nesting", [b"[" * 100_000], ":13: JSON nested too deeply"),
    ("a huge line", [json.dumps({"question": "q" * 200_000, "answer": "a"}).encode()],
     ":13: this line is 200,"),
    ("not UTF-8", [b'{"question": "\xff", "answer": "a"}'], ":13: byte 15"),
    ("no dev split", [], ":12: no record is in the dev split"),
])
def test_named_cases(name, lines, expected, tmp_path, tokenizer):
    if isinstance(expected, tuple):  # accepted: the odd text goes through, shown literally
        q, a = expected
        core = [good_line(i, ("train", "dev", "test")[i % 3], q, a) for i in range(12)]
        data = check(b"\n".join(core), tmp_path, tokenizer)
        assert data is not None
        printed = through_every_script(tmp_path / "data [x].jsonl", tmp_path / "again",
                                       tokenizer)[1]
        assert edu_qa.visible(q or a) in printed
        return
    core = [good_line(i, ("train", "dev", "test")[i % 3]) for i in range(12)]
    if name == "no dev split":
        core = [good_line(i, ("train", "test")[i % 2]) for i in range(12)]
    path = tmp_path / "data.jsonl"
    path.write_bytes(b"\n".join(core + lines))
    with pytest.raises(edu_qa.UserError) as err:
        edu_qa.load_qa(path)
    assert str(err.value).startswith(str(path) + expected), str(err.value)


def test_openai_minimum_names_the_lines_and_writes_nothing(tmp_path, capsys):
    rows = [good_line(i, ("train", "dev", "test")[i % 3]) for i in range(12)]
    path = tmp_path / "few.jsonl"
    path.write_bytes(b"\n".join(rows))
    code = edu_qa.run_script(edu_qa.HERE / "openai_finetune.py",
                             ["--data", str(path), "--dry-run", "--output-dir",
                              str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2 and "4 training examples (lines 1, 4, 7, 10)" in err
    assert "add training examples" in err and not (tmp_path / "out").exists()


def test_printers_show_text_exactly_and_escape_what_would_act_on_the_terminal():
    console = recording_console()
    console.print("a[i] [/b] [bold]x[/bold] :x:")
    edu_qa.say(console, "[red]label", " value [/b]")
    assert console.file.getvalue() == "a[i] [/b] [bold]x[/bold] :x:\n[red]label value [/b]\n"
    assert edu_qa.visible("a\x1bb\u2028c\u202ed\ud800\n\t") == \
        "a\\x1bb\\u2028c\\u202ed\\ud800\n\t"
    assert report.md("a|b_c*d`e\nf") == "a\\|b\\_c\\*d\\`e f"
    assert report.md_code("x ``y``") == "``` x ``y`` ```"
