"""What the three scripts share, so that it is identical in all of them; one job per file.

    cli.py           settings from a Config dataclass, messages, exit status, literal printing
    data.py          the QA file: validated, split, sampled; the plain chat prompt
    scoring.py       the metric (key found, strict, word-overlap F1), 95% intervals, paired tests
    local_model.py   the embedded model, loaded once, answering in batches
    onednn.py        fp32 linear layers multiplied by oneDNN on a CPU (2x PyTorch's default)
    machine_facts.py what the numbers were measured on: CPU and its vector unit, GPU, library
                     versions, sizes
    results.py       results/*.json in one schema: written, read back, graded again
    baseline.py      the plain-prompt answers every method is measured against (shared)
    before_after.py  step 5's report: before and after graded, compared, two shown in full
    scoreboard.py    step 6's scoreboard: every method side by side, one question through all
    notices.py       the "What to notice:" line that ends each step, from the run's numbers
    record.py        one run's record, and the small records each step returns
    seeds.py         runs that differ only in --seed: where one run falls among them
    chat_format.py   OpenAI's fine-tuning file rules (the OpenAI script and the local service)
    recipe.py        the LoRA recipe's settings, shared by the script, the service, the benchmark
    training.py      the LoRA recipe's machinery: device, estimates, 4-bit, chat tokens
    shared_prompt.py the LoRA recipe's Trainer: a batch's shared system prompt computed once
    dev_judge.py     the LoRA recipe's judge: dev answers after every epoch choose the kept one
    training_plan.py GPU settings chosen from free memory (the LoRA recipe on CUDA)
    dspy_engine.py   DSPy's engine on the local model, the optimizer's report and table
    dspy_costs.py    a hosted LM's calls, tokens and dated prices, before any call
    openai_jobs.py   the bookkeeping of a fine-tuning job: state file, watching, refusals
    openai_costs.py  OpenAI's file rules, token counts and dated prices, before any upload
    service/         the local OpenAI-compatible fine-tuning service (finetune_service.py)
    model_dates.py   hosted models' shutdown dates: the plan warns, --execute refuses after
    settings.py      the settings all three scripts share (SharedConfig)

The scripts use the names below as edu_qa.<name>. Only the standard library is imported at
module level, so that --help and the dry runs stay fast; torch, transformers, rich and scipy
are imported inside the functions that need them.
"""

from . import scoring
from .baseline import BASELINE_TITLE, baseline_score, plain_prompt_baseline, read_baseline
from .before_after import report_test_answers, show_changed_examples
from .cli import (Stop, UserError, begin, console, in_notebook, notice, on_exit, on_interrupt,
                  parse_config, plan_only, print_config, print_versions, redact, run, run_quietly,
                  run_script, say, seed_everything, step, stop, visible)
from .data import (DATA_FILE, HERE, QA, SPLITS, SYSTEM_PROMPT, QADataset, by_subject,
                   chat_messages, load_qa, print_data_summary, subjects_take_turns,
                   training_subset)
from .local_model import (EMBEDDED_CACHE, EMBEDDED_DESCRIPTION, EMBEDDED_GGUF, EMBEDDED_MODEL,
                          BatchedGenerator, describe_model, embedded_model_dir,
                          embedded_model_folder, generate, load_local_model, load_tokenizer,
                          model_is_local, model_source, quiet_transformers,
                          rows_leave_when_done, shared_prefix, use_offline_tiktoken)
from .machine_facts import cpu_has_native_bf16, disk_size, library_versions, machine, vector_unit
from .record import Answered, Prepared, Run, Tuned
from .results import (BASELINE_FILE, EXERCISE_RESULTS, METHODS, RESULTS_DIR, SCHEMA_VERSION,
                      artifact, command_line, current_results, fmt_bytes, fmt_seconds,
                      load_all_results, new_results, prediction_rows, run_for_results, summarize,
                      write_json, write_results)
from .scoreboard import (SCOREBOARD_FIELDS, data_sent, method_vs_method, one_question_rows,
                         pick_question, print_one_question, print_scoreboard, produced,
                         save_and_compare, scoreboard_columns)
from .scoring import f1, is_correct, normalize, score
from .settings import SharedConfig

__all__ = [
    "scoring", "BASELINE_TITLE", "baseline_score", "plain_prompt_baseline", "read_baseline",
    "report_test_answers", "show_changed_examples", "Stop", "UserError", "begin", "console",
    "in_notebook", "notice", "on_exit", "on_interrupt", "parse_config", "plan_only",
    "print_config", "print_versions", "redact", "run", "run_quietly", "run_script", "say",
    "seed_everything", "step", "stop", "visible", "DATA_FILE", "HERE", "QA", "SPLITS",
    "SYSTEM_PROMPT", "QADataset", "by_subject", "chat_messages", "load_qa", "print_data_summary",
    "subjects_take_turns", "training_subset", "EMBEDDED_CACHE", "EMBEDDED_DESCRIPTION",
    "EMBEDDED_GGUF", "EMBEDDED_MODEL", "BatchedGenerator", "describe_model", "embedded_model_dir",
    "embedded_model_folder", "generate", "load_local_model", "load_tokenizer", "model_is_local",
    "model_source", "quiet_transformers", "rows_leave_when_done", "shared_prefix",
    "use_offline_tiktoken",
    "cpu_has_native_bf16", "disk_size", "vector_unit",
    "library_versions", "machine", "Answered", "Prepared", "Run", "Tuned", "BASELINE_FILE",
    "EXERCISE_RESULTS", "METHODS", "RESULTS_DIR", "SCHEMA_VERSION", "artifact", "command_line",
    "current_results", "fmt_bytes", "fmt_seconds", "load_all_results", "new_results",
    "prediction_rows", "run_for_results", "summarize", "write_json", "write_results",
    "SCOREBOARD_FIELDS", "data_sent", "method_vs_method", "one_question_rows", "pick_question",
    "print_one_question", "print_scoreboard", "produced", "save_and_compare", "scoreboard_columns",
    "f1", "is_correct", "normalize", "score", "SharedConfig",
]
