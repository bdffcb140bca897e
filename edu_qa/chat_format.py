"""OpenAI's rules for a chat fine-tuning file, in one place.

openai_finetune.py checks its file with them before uploading (step 2), and the local
fine-tuning service (finetune_service.py) checks an uploaded file with the same functions while
its job is `validating_files`, so a file the script accepts is a file the service accepts.

    check_format()     the checks of OpenAI's data-preparation cookbook: errors and warnings
    read_examples()    a JSONL file's bytes -> examples, or the first bad line, by number
    default_epochs()   OpenAI's rule for n_epochs="auto"
"""

from __future__ import annotations

import json
from collections import Counter

MIN_EXAMPLES = 10  # OpenAI rejects a training file with fewer
# OpenAI's default-epochs rule (fine-tuning guide and the data-prep cookbook): aim for 3 epochs,
# but keep epochs x examples within [100, 25000], and epochs within [1, 25].
TARGET_EPOCHS, MIN_TARGET_EXAMPLES, MAX_TARGET_EXAMPLES = 3, 100, 25_000
MIN_DEFAULT_EPOCHS, MAX_DEFAULT_EPOCHS = 1, 25
ROLES = ("system", "user", "assistant", "function")
MESSAGE_KEYS = ("role", "content", "name", "function_call", "weight")


def default_epochs(n_examples: int) -> int:
    epochs = TARGET_EPOCHS
    if n_examples * TARGET_EPOCHS < MIN_TARGET_EXAMPLES:
        epochs = min(MAX_DEFAULT_EPOCHS, MIN_TARGET_EXAMPLES // n_examples)
    elif n_examples * TARGET_EPOCHS > MAX_TARGET_EXAMPLES:
        epochs = max(MIN_DEFAULT_EPOCHS, MAX_TARGET_EXAMPLES // n_examples)
    return epochs


def check_format(examples: list) -> tuple[Counter, Counter]:
    """The checks of OpenAI's data-preparation cookbook: errors block the upload, warnings
    are reported."""
    errors, warnings = Counter(), Counter()
    for ex in examples:
        for kind, is_error in example_problems(ex):
            (errors if is_error else warnings)[kind] += 1
    return errors, warnings


def example_problems(ex) -> list[tuple[str, bool]]:
    """(problem, is it an error) for one example; an empty list for a clean one."""
    if not isinstance(ex, dict):
        return [("data_type", True)]
    messages = ex.get("messages")
    if not messages or not isinstance(messages, list):
        return [("missing_messages_list", True)]
    found = []
    for message in messages:
        if not isinstance(message, dict) or "role" not in message or "content" not in message:
            found.append(("message_missing_key", True))
            continue
        if any(k not in MESSAGE_KEYS for k in message):
            found.append(("message_unrecognized_key", True))
        if message["role"] not in ROLES:
            found.append(("unrecognized_role", True))
        content = message["content"]
        if (not content and not message.get("function_call")) or \
                not isinstance(content, (str, type(None))):
            found.append(("missing_content", True))
    roles = [m.get("role") for m in messages if isinstance(m, dict)]
    if "assistant" not in roles:
        found.append(("example_missing_assistant_message", True))
    if "system" not in roles:
        found.append(("no_system_message", False))
    if "user" not in roles:
        found.append(("no_user_message", False))
    return found


def read_examples(raw: bytes) -> tuple[list, str | None]:
    """(examples, None) for a valid JSONL training file, or (examples so far, 'line N: what is
    wrong') at the first line that is not UTF-8, not JSON or breaks a format rule."""
    examples = []
    for number, line in enumerate(raw.split(b"\n"), start=1):
        if not line.strip():
            continue
        try:
            ex = json.loads(line.decode("utf-8"))
        except UnicodeDecodeError:
            return examples, f"line {number}: not valid UTF-8"
        except (json.JSONDecodeError, RecursionError) as err:
            return examples, f"line {number}: invalid JSON ({getattr(err, 'msg', err)})"
        errors = [kind for kind, is_error in example_problems(ex) if is_error]
        if errors:
            return examples, f"line {number}: {', '.join(errors)}"
        examples.append(ex)
    return examples, None
