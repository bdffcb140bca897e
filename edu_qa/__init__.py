"""What the three scripts share, so that it is identical in all of them; one job per file.

    cli.py           settings from a Config dataclass, messages, exit status, literal printing
    data.py          the QA file: validated, split, sampled; the plain chat prompt
    scoring.py       the metric (key found, strict, word-overlap F1), 95% intervals, paired tests
    local_model.py   the embedded model, loaded once, answering in batches
    results.py       results/*.json, the shared baseline, step 5's report, step 6's scoreboard
    seeds.py         runs that differ only in --seed: where one run falls among them
    chat_format.py   OpenAI's fine-tuning file rules (the OpenAI script and the local service)
    training.py      the LoRA recipe's machinery: device, tokenized chats, estimates, the judge
    training_plan.py GPU settings chosen from free memory (the LoRA recipe on CUDA)
    dspy_engine.py   DSPy's engine on the local model, costs, the optimizer's report and table
    openai_jobs.py   the bookkeeping of a fine-tuning job: state file, refusals, costs
    model_dates.py   hosted models' shutdown dates: the plan warns, --execute refuses after
    settings.py      the settings all three scripts share (SharedConfig)

The scripts use the names below as edu_qa.<name>. Only the standard library is imported at
module level, so that --help and the dry runs stay fast; torch, transformers, rich and scipy
are imported inside the functions that need them.
"""

from . import scoring
from .cli import (Stop, UserError, begin, console, in_notebook, notice, on_exit, on_interrupt,
                  parse_config, plan_only, print_config, seed_everything, print_versions, redact, run, run_quietly,
                  run_script, say,
                  step, stop, visible)
from .data import (DATA_FILE, HERE, QA, SPLITS, SYSTEM_PROMPT, QADataset, by_subject,
                   chat_messages, load_qa, print_data_summary, subjects_take_turns,
                   training_subset)
from .local_model import (EMBEDDED_CACHE, EMBEDDED_DESCRIPTION, EMBEDDED_GGUF, EMBEDDED_MODEL,
                          BatchedGenerator, disk_size, embedded_model_dir,
                          embedded_model_folder, generate, library_versions, load_local_model,
                          load_tokenizer, machine, model_is_local, describe_model, model_source, quiet_transformers,
                          shared_prefix, use_offline_tiktoken)
from .results import (artifact, baseline_score, BASELINE_FILE, EXERCISE_RESULTS, BASELINE_TITLE, METHODS, RESULTS_DIR, SCHEMA_VERSION,
                      SCOREBOARD_FIELDS, command_line, current_results, data_sent, fmt_bytes,
                      fmt_seconds, load_all_results, method_vs_method, new_results,
                      one_question_rows, pick_question, plain_prompt_baseline,
                      prediction_rows, print_one_question, print_scoreboard, produced,
                      read_baseline, report_test_answers, run_for_results, save_and_compare,
                      scoreboard_columns, show_changed_examples, summarize, write_json,
                      write_results)
from .scoring import f1, is_correct, normalize, score
from .settings import SharedConfig

__all__ = [
    "artifact", "baseline_score", "seed_everything", "EXERCISE_RESULTS", "run_quietly", "run_for_results", "Stop", "begin", "plan_only", "notice", "on_exit", "on_interrupt", "run_script", "stop", "scoring", "UserError",
    "console", "in_notebook", "parse_config", "print_config",
    "print_versions", "redact", "run", "say", "step", "visible", "DATA_FILE", "HERE", "QA",
    "SPLITS", "SYSTEM_PROMPT", "QADataset", "by_subject", "chat_messages", "load_qa",
    "print_data_summary", "subjects_take_turns", "training_subset", "EMBEDDED_CACHE",
    "EMBEDDED_DESCRIPTION", "EMBEDDED_GGUF", "EMBEDDED_MODEL", "BatchedGenerator", "disk_size",
    "embedded_model_dir", "embedded_model_folder", "generate", "library_versions",
    "load_local_model", "load_tokenizer", "model_is_local", "describe_model", "machine", "model_source", "quiet_transformers",
    "shared_prefix", "use_offline_tiktoken", "BASELINE_FILE", "BASELINE_TITLE", "METHODS",
    "RESULTS_DIR", "SCHEMA_VERSION", "SCOREBOARD_FIELDS", "command_line", "current_results",
    "data_sent", "fmt_bytes", "fmt_seconds", "load_all_results", "method_vs_method",
    "new_results", "one_question_rows", "pick_question", "plain_prompt_baseline",
    "prediction_rows", "print_one_question", "print_scoreboard", "produced", "read_baseline",
    "report_test_answers", "save_and_compare", "scoreboard_columns", "show_changed_examples",
    "summarize", "write_json", "write_results", "f1", "is_correct", "normalize", "score",
    "SharedConfig",
]
