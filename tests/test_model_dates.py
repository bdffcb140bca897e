"""Hosted models carry their shutdown dates: the plan warns before, --execute refuses after."""

import subprocess
import sys

import pytest

import edu_qa
from conftest import ROOT
from edu_qa import dspy_costs, model_dates, openai_costs


def test_every_openai_model_in_the_price_tables_has_a_date():
    for model in openai_costs.MODELS:
        assert model_dates.shutdown(model), model
    for lm in dspy_costs.PRICES:
        if lm.startswith("openai/") and lm != "openai/gpt-4o":  # an alias: no date announced
            assert model_dates.shutdown(lm), lm


def test_before_the_date_a_warning_after_it_a_refusal(monkeypatch):
    monkeypatch.setenv("EDU_QA_TODAY", "2026-11-30")
    line = model_dates.check_model("gpt-4o-mini-2024-07-18", execute=True)
    assert "shuts down on 2027-01-14 (45 days from now" in line
    assert "SHUT DOWN on 2026-10-23" in model_dates.check_model("openai/gpt-4.1-nano", False)
    with pytest.raises(edu_qa.UserError, match="shut down on 2026-10-23"):
        model_dates.check_model("gpt-4.1-nano-2025-04-14", execute=True)
    # a fine-tuned model shuts down with its base
    assert model_dates.shutdown("ft:gpt-4o-mini-2024-07-18:org:edu-qa:abc")[0].year == 2027
    assert "no shutdown date known" in model_dates.check_model("some-new-model", True)


def run(args, **env):
    import os
    return subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=300, env={**os.environ, **env})


def test_dspy_refuses_a_shut_down_lm_with_exit_2_and_sends_nothing(no_network):
    proc = run(["dspy_example.py", "--lm", "openai/gpt-4.1-nano", "--execute"],
               EDU_QA_TODAY="2026-11-30", OPENAI_API_KEY="sk-test-not-used")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "shut down on 2026-10-23" in proc.stderr and "nothing was sent" in proc.stderr
    plan = run(["dspy_example.py", "--lm", "openai/gpt-4o-mini"], EDU_QA_TODAY="2026-11-30")
    assert plan.returncode == 0 and "shuts down on 2027-01-14" in plan.stdout


def test_no_new_openai_fine_tuning_job_from_2027_01_06(tmp_path):
    proc = run(["openai_finetune.py", "--execute", "--output-dir", str(tmp_path)],
               EDU_QA_TODAY="2027-01-06", OPENAI_API_KEY="sk-test-not-used")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "no new fine-tuning jobs since 2027-01-06" in proc.stderr
    plan = run(["openai_finetune.py", "--dry-run", "--output-dir", str(tmp_path)],
               EDU_QA_TODAY="2026-11-30")
    assert "closes to new jobs on 2027-01-06" in plan.stdout
