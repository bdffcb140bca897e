"""dspy_example.py offline: wiring with DummyLM, the real local engine, save/load, the guard."""

import os

import pytest

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

import dspy_example as ex  # noqa: E402
import edu_qa  # noqa: E402
from conftest import ROOT  # noqa: E402
from edu_qa import dspy_costs, dspy_engine  # noqa: E402


def setup(argv):
    cfg = ex.Config(**argv)
    console = edu_qa.console()
    prepared = ex.prepare_data(cfg, console)
    formatted = ex.convert_format(cfg, prepared.train, console)
    return (cfg, console, prepared.data, prepared.train, prepared.dev, prepared.test,
            prepared, formatted.signature, formatted.adapter)


def test_program_wiring_with_dummy_lm(tmp_path):
    import dspy
    from dspy.utils.dummies import DummyLM
    cfg, console, data, train, dev, test, prepared, signature, adapter = setup(
        {"output_dir": str(tmp_path), "optimizer": "labeled", "train_size": 5, "threads": 1,
         "results_dir": str(tmp_path / "results")})
    assert len(train) == 5 and set(train[0].inputs().keys()) == {"question"}
    lm = DummyLM([{"answer": "Carbon dioxide. Plants take it in."}] * 200, adapter=adapter)
    dspy.configure(lm=lm, adapter=adapter)
    configured = ex.Configured(lm, None, dspy.Predict(signature),
                               ex.build_optimizer(cfg, ex.make_metric()))
    run = edu_qa.Run.start(ex.METHOD, cfg, data, train, "dummy")
    tuned = ex.tune(cfg, configured, train, dev[:4], set(), console, run)
    report = run.results["extra"]["optimizer_report"]
    assert len(tuned.optimized.predictors()[0].demos) == 4  # LabeledFewShot: k demos, no LM calls
    assert report["lm_calls"] == 0 and report["examples_looked_at"] == 0
    # the same answers with and without demos: not better on dev, so the zero-shot is kept
    assert tuned.kept == "zero-shot" and tuned.model.predictors()[0].demos == []
    assert tuned.artifact.exists()
    pred = tuned.model(question=test[0].question)
    assert pred.answer == "Carbon dioxide. Plants take it in."


def test_small_chat_adapter_speaks_the_models_own_chat_format():
    """Zero-shot, the program sends exactly the plain prompt every method starts from; demos
    are earlier user/assistant turns; the reply is the answer, whole (nothing to fail to
    parse). ChatAdapter, one flag away, adds its field markers."""
    cfg, console, data, train, dev, test, prepared, signature, adapter = setup({})
    question = test[0].question
    assert adapter.format(signature, demos=[], inputs={"question": question}) == \
        edu_qa.chat_messages(question)
    demos = [{"question": train[0].question, "answer": train[0].answer}]
    messages = adapter.format(signature, demos=demos, inputs={"question": question})
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "user"]
    assert messages[1]["content"] == train[0].question
    assert messages[2]["content"] == train[0].answer
    assert adapter.parse(signature, " Nitrogen. About 78%.\n") == {"answer": "Nitrogen. About 78%."}
    chat = ex.make_adapter("chat")
    assert "[[ ## answer ## ]]" in chat.format(signature, demos=[],
                                               inputs={"question": question})[0]["content"]


def test_gepa_without_a_reflection_lm_says_why_and_sends_nothing(tmp_path, no_network, capsys):
    code = edu_qa.run_script(ROOT / "dspy_example.py", [
        "--optimizer", "gepa", "--output-dir", str(tmp_path),
        "--results-dir", str(tmp_path / "results")])
    err = capsys.readouterr().err
    assert code == 2
    assert "--optimizer gepa needs a reflection LM" in err and "--reflection-lm" in err
    assert no_network == [] and not (tmp_path / "results").exists()


def test_metric_in_dspy_shape():
    import dspy
    metric = ex.make_metric()
    example = dspy.Example(question="q", answer="The kidneys. They filter blood.",
                           key="kidneys|kidney").with_inputs("question")
    right = dspy.Prediction(answer="The kidneys. They filter the blood.")
    passing_mention = dspy.Prediction(answer="The liver. It works with the kidneys.")
    assert metric(example, right) == pytest.approx(edu_qa.f1(right.answer, example.answer))
    assert metric(example, right, trace=[]) is True
    assert metric(example, passing_mention, trace=[]) is False  # key not in the first sentence


def test_local_engine_answers_and_program_round_trips(tmp_path):
    """The embedded model behind DSPy's custom-engine interface: real output, parsed; the
    saved program, reloaded, gives identical predictions."""
    import dspy
    cfg, console, data, train, dev, test, prepared, signature, adapter = setup(
        {"output_dir": str(tmp_path), "max_new_tokens": 40})
    engine = dspy_engine.LocalEngine(cfg.model, cfg.max_new_tokens)
    lm = dspy.LM("local/embedded", engine=engine, temperature=0.0, cache=False,
                 max_tokens=cfg.max_new_tokens)
    dspy.configure(lm=lm, adapter=adapter)
    program = dspy.LabeledFewShot(k=3).compile(dspy.Predict(signature), trainset=train)
    questions = [t.question for t in test[:2]]
    answers = [program(question=q).answer for q in questions]
    assert all(isinstance(a, str) and a.strip() for a in answers), answers
    assert engine.calls == 2 and engine.output_tokens > 0
    path = tmp_path / "program.json"
    program.save(str(path))
    fresh = dspy.Predict(signature)
    fresh.load(str(path))
    assert [fresh(question=q).answer for q in questions] == answers


def test_hosted_lm_without_execute_prints_plan_and_opens_no_socket(tmp_path, no_network,
                                                                   capsys):
    code = edu_qa.run_script(ROOT / "dspy_example.py", [
        "--lm", "openai/gpt-4o-mini", "--output-dir", str(tmp_path),
        "--results-dir", str(tmp_path / "results")])
    out = capsys.readouterr().out
    assert code == 0
    assert "Plan only" in out and "LM calls, at most" in out and "cost, estimated: $" in out
    assert (f"To go ahead: python dspy_example.py --output-dir {tmp_path} --results-dir "
            f"{tmp_path / 'results'} --lm openai/gpt-4o-mini --execute") in out
    assert no_network == []
    assert not (tmp_path / "results").exists()


def test_plan_counts_calls_and_prices_tokens():
    calls = dspy_costs.plan_calls("bootstrap", 8, n_train=72, n_dev=24, n_test=24)
    # dev: zero-shot and optimized; test: the plain prompt, zero-shot and optimized
    assert calls == {"optimize": 72, "evaluate": 2 * 24 + 3 * 24, "total": 192}
    assert dspy_costs.plan_calls("labeled", 8, 72, 24, 24)["optimize"] == 0


def test_hosted_lm_execute_without_key_exits_2(tmp_path, no_network, monkeypatch, capsys):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    code = edu_qa.run_script(ROOT / "dspy_example.py", ["--lm", "openai/gpt-4o-mini", "--execute",
                                "--output-dir", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 2
    assert "OPENAI_API_KEY" in err and "nothing was sent" in err
    assert no_network == []


def test_bootstrapping_asks_its_teacher_in_batches_with_the_same_calls_and_demos():
    """dspy_engine.teacher_questions_together: the training questions bootstrapping will ask
    reach the LM together, and the optimizer ends with the same demos after the same LM calls
    as when it asks one at a time (the loop's own calls are cache hits); a question repeated
    in the training set is not sent twice; DSPy's own methods come back, also after an error."""
    import contextlib
    import threading

    import dspy
    from dspy.lm15 import Message, Response, Usage
    from dspy.teleprompt.bootstrap import BootstrapFewShot

    class Engine:  # answers right for even numbers only; counts the calls in flight at once
        def __init__(self, together: int = 1):
            self.calls, self.now, self.most, self.lock = [], 0, 0, threading.Lock()
            # the first `together` calls wait for each other (10 s at most), so that calls
            # sent together are in flight together however busy the machine
            self.barrier = threading.Barrier(together, timeout=10)

        def complete(self, request):
            text = "".join(p.text for p in request.messages[-1].parts)
            with self.lock:
                # every earlier turn: the demos, the question asked left out of them
                self.calls.append(tuple("".join(p.text for p in m.parts)
                                        for m in request.messages))
                self.now += 1
                self.most = max(self.most, self.now)
            if self.barrier.parties > 1 and len(self.calls) <= self.barrier.parties:
                with contextlib.suppress(threading.BrokenBarrierError):
                    self.barrier.wait()
            with self.lock:
                self.now -= 1
            n = int(text.split()[-1].rstrip("?"))
            return Response(id=None, model=request.model, finish_reason="stop",
                            message=Message.assistant(f"Number {n}." if n % 2 == 0 else "No."),
                            usage=Usage(input_tokens=1, output_tokens=1))

    numbers = [0, 1, 2, 2, 3, 4, 5, 6, 7, 8, 9, 10]  # 2 twice: one request, asked once
    train = [dspy.Example(question=f"What is number {i}?", answer=f"Number {i}.",
                          key=f"number {i}").with_inputs("question") for i in numbers]
    signature = ex.convert_format(ex.Config(), train, edu_qa.console()).signature
    ours = BootstrapFewShot._bootstrap, BootstrapFewShot._bootstrap_one_example

    def compile_once(together: bool):
        engine = Engine(3 if together else 1)
        lm = dspy.LM("local/fake", engine=engine, temperature=0.0)
        # every training pair a labeled demo of the teacher, so each request shows the filter
        optimizer = dspy.BootstrapFewShot(metric=ex.make_metric(), max_bootstrapped_demos=4,
                                          max_labeled_demos=len(train))
        with dspy.context(lm=lm, adapter=ex.make_adapter("small-chat")), \
                (dspy_engine.teacher_questions_together() if together
                 else contextlib.nullcontext()):
            program = optimizer.compile(dspy.Predict(signature), trainset=train)
        return [d.toDict() for d in program.predictors()[0].demos], engine

    cache = dspy.cache
    try:
        dspy.configure_cache(enable_disk_cache=False, enable_memory_cache=True)  # empty
        demos_alone, alone = compile_once(False)
        dspy.configure_cache(enable_disk_cache=False, enable_memory_cache=True)
        demos_together, together = compile_once(True)
    finally:
        dspy.cache = cache
    assert demos_together == demos_alone
    assert sorted(together.calls) == sorted(alone.calls) and len(alone.calls) == 5
    assert len(set(alone.calls)) == 5  # the repeated 2 was a cache hit in both
    assert alone.most == 1 and together.most == 3  # 0, 1, 2 together; then 2 is found cached
    assert (BootstrapFewShot._bootstrap, BootstrapFewShot._bootstrap_one_example) == ours
    with pytest.raises(RuntimeError), dspy_engine.teacher_questions_together():
        with dspy_engine.teacher_questions_together():
            raise RuntimeError("stopped")
    assert (BootstrapFewShot._bootstrap, BootstrapFewShot._bootstrap_one_example) == ours


def test_usage_of_a_hosted_lm_leaves_out_cache_hits():
    """Step 6's LM calls and cost for a hosted --lm count what reached the LM: DSPy 3.4's
    history also holds each cache hit (marked only by having no usage)."""
    import dspy
    from dspy.lm15 import Message, Response, Usage

    class Engine:
        calls = 0

        def complete(self, request):
            Engine.calls += 1
            return Response(id=None, model=request.model, finish_reason="stop",
                            message=Message.assistant("Nitrogen."),
                            usage=Usage(input_tokens=7, output_tokens=2))

    cache = dspy.cache
    try:
        dspy.configure_cache(enable_disk_cache=False, enable_memory_cache=True)
        lm = dspy.LM("local/fake", engine=Engine(), temperature=0.0)
        for _ in range(3):
            lm(messages=[{"role": "user", "content": "What gas is most of the air?"}])
    finally:
        dspy.cache = cache
    assert Engine.calls == 1 and len(lm.history) == 3
    used = dspy_engine.usage(lm, None)
    assert used["calls"] == 1 and used["input_tokens"] == 7 and used["output_tokens"] == 2
