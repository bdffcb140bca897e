"""The command line every script shares: settings, messages, exit status, literal printing.

    begin()          the first cell of a script: settings (from its Config dataclass, the
                     kernel's own arguments ignored in a notebook), the console, and errors
                     shown as messages: bad input -> 'error: FILE:LINE: message', exit 2
    stop()           the end of a plan-only run: exit 0 from a terminal, a note in a notebook
    run()            a script's main(), or with run_script() a whole script, run in this
                     process (tests, benchmarks, `sys.exit(run(main))`), its exit status back
    console(), say() one console that prints text from data or servers literally
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import io
import json
import os
import random
import runpy
import sys
import typing
import unicodedata
from pathlib import Path


class UserError(Exception):
    """A problem the user can fix (bad file, missing key, missing package): no traceback."""


BIDI_CONTROLS = set("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def parse_config(config_cls, doc: str, argv=None):
    """Build argparse from a frozen Config dataclass: each field's type from its annotation,
    its help from metadata['help'], so the help text lives next to the field and its default.

    In a notebook the kernel's own arguments (-f kernel.json) are not the script's: there the
    defaults apply, or the list a teacher passes as argv."""
    first_para = doc.strip().split("\n\n")[0]
    parser = argparse.ArgumentParser(
        description=first_para, epilog=doc.strip().split("\n\n", 1)[-1],
        formatter_class=argparse.RawDescriptionHelpFormatter)
    hints = typing.get_type_hints(config_cls)
    for f in dataclasses.fields(config_cls):
        flag = "--" + f.name.replace("_", "-")
        help_ = f.metadata.get("help", "")
        kind = _base_type(hints[f.name])
        if kind is bool:
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=f.default,
                                help=help_)
        else:
            default = "" if f.default is None else f" (default: {f.default})"
            parser.add_argument(flag, type=_optional(kind) if f.default is None else kind,
                                default=f.default,
                                choices=f.metadata.get("choices"), help=help_ + default)
    parser.add_argument("--print-settings", action="store_true",
                        help="print every setting this command would run with, as JSON, and "
                             "stop (data_needs.py reads a script's defaults this way)")
    if argv is None and in_notebook():
        argv = []
    args = vars(parser.parse_args(argv))
    cfg = config_cls(**{k: v for k, v in args.items() if k != "print_settings"})
    if hasattr(cfg, "results_dir"):
        from .settings import with_results_dir
        cfg = with_results_dir(cfg)
    if args["print_settings"]:
        print(json.dumps(dataclasses.asdict(cfg), ensure_ascii=False))
        raise Stop(0)
    return cfg


def _base_type(hint):
    """int for 'int' and for 'int | None'."""
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    return args[0] if args else hint


def _optional(type_):
    """'none' or '' on the command line sets an optional setting back to None."""
    def convert(text):
        return None if text.lower() in ("none", "") else type_(text)
    convert.__name__ = type_.__name__
    return convert


def in_notebook() -> bool:
    """True inside a Jupyter kernel, where sys.argv holds the kernel's arguments (and not in a
    process that merely imported ipykernel, as a test that runs notebooks does)."""
    if "IPython" not in sys.modules:
        return False
    from IPython import get_ipython
    return type(get_ipython()).__name__ == "ZMQInteractiveShell"


EXIT_ERROR, EXIT_INTERRUPTED = 2, 130
_cleanups: list = []          # closed on any exit: a service started by a script, for one
_interrupt_note = [lambda: "Interrupted."]


class Stop(SystemExit):
    """A run that ends early on purpose (a plan only): exit status 0, no traceback."""


def begin(config_cls, doc: str, notebook_args=(), argv=None):
    """The first cell of every script: its settings, the console it prints with, and errors
    shown as one-line messages with a documented exit status instead of tracebacks."""
    messages_not_tracebacks()
    cfg = parse_config(config_cls, doc, list(notebook_args) if argv is None and in_notebook()
                       else argv)
    seed_everything(cfg.seed)
    con = console()
    print_config(con, cfg)
    return cfg, con


def seed_everything(seed: int) -> None:
    """Python's, NumPy's and torch's random generators from --seed, before anything random
    happens: the same command gives the same numbers. torch is seeded here only if it is
    already imported (importing it would slow --help and the dry runs); the LoRA recipe seeds
    it again right before get_peft_model draws the adapter's initial weights."""
    random.seed(seed)
    try:
        import numpy
        numpy.random.seed(seed)
    except ImportError:  # numpy comes with torch; a dry run may have neither
        pass
    if "torch" in sys.modules:
        sys.modules["torch"].manual_seed(seed)


def plan_only(console, reasons: list[str], command: str) -> None:
    """What --execute would do and why it is needed, the command to go ahead; then stop."""
    console.print("Plan only: nothing that costs was started.", style="bold yellow")
    for reason in reasons:
        console.print(f"  needs --execute: {reason}")
    stop(console, f"To go ahead: {command} --execute")


def stop(console, message: str) -> None:
    """End the run here on purpose, after printing why (a plan only: nothing more to do)."""
    console.print(message, soft_wrap=True)
    raise Stop(0)


def on_exit(cleanup) -> None:
    """Run cleanup() however the run ends (a finished run calls it itself, earlier)."""
    _cleanups.append(cleanup)


def on_interrupt(note) -> None:
    """note() says what Ctrl-C interrupted and what was kept; printed instead of a traceback."""
    _interrupt_note[0] = note


def close_all() -> None:
    while _cleanups:
        try:
            _cleanups.pop()()
        except Exception:  # noqa: BLE001  (cleaning up after an error: the error matters)
            pass


def how_it_ended(err: BaseException) -> tuple[str, int] | None:
    """The one mapping from how a run ended to (message, exit status): a UserError prints
    'error: message' (exit 2), Ctrl-C the script's note (exit 130), a Stop or any other
    SystemExit (argparse, a script's own status) ends quietly with its code; anything else is
    a bug (None: it keeps its traceback)."""
    if isinstance(err, UserError):
        return f"error: {visible(err)}", EXIT_ERROR
    if isinstance(err, KeyboardInterrupt):
        return visible(_interrupt_note[0]()), EXIT_INTERRUPTED
    if isinstance(err, SystemExit):
        code = err.code
        return "", code if isinstance(code, int) else 0 if code is None else 1
    return None


def messages_not_tracebacks() -> None:
    """A script's errors as how_it_ended() says, instead of tracebacks. In a notebook the same
    messages appear under the cell."""
    def hook(etype, value, tb):
        said = how_it_ended(value)
        close_all()
        if said is None:
            return sys.__excepthook__(etype, value, tb)
        sys.stdout.flush()
        if said[0]:
            print(said[0], file=sys.stderr)
        sys.stderr.flush()
        os._exit(said[1])  # the status a user's shell or CI sees

    sys.excepthook = hook
    if in_notebook():
        from IPython import get_ipython

        def show(shell, etype, value, tb, tb_offset=None):
            close_all()
            print(how_it_ended(value)[0] or "(stopped here on purpose)", file=sys.stderr)
        get_ipython().set_custom_exc((UserError, KeyboardInterrupt, Stop), show)


def run(main, argv=None) -> int:
    """Run a script's main(argv) in this process and return its exit status, with the message
    how_it_ended() gives (a UserError: 'error: ...' and 2, with no traceback); what the run
    left behind (cleanups, its Ctrl-C note, its exception hook) is undone."""
    try:
        main(argv)
    except (UserError, KeyboardInterrupt, SystemExit) as err:
        said, code = how_it_ended(err)
        if said:
            print(said, file=sys.stderr)
        return code
    finally:
        sys.excepthook = sys.__excepthook__
        close_all()
        _interrupt_note[0] = lambda: "Interrupted."
    return 0


def run_script(path, argv: list[str]) -> int:
    """Run a script top to bottom in this process, as `python path argv...` would, and return
    its exit status (run): what the tests and the benchmark use."""
    def whole_script(argv):
        saved = sys.argv
        sys.argv = [str(path), *argv]
        try:
            runpy.run_path(str(path), run_name="__main__")
        finally:
            sys.argv = saved
    return run(whole_script, argv)


def run_quietly(path, argv: list[str]) -> str:
    """What a script prints, run in this process (run_script) with its output kept; a
    non-zero exit status is a UserError naming the command."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = run_script(path, argv)
    if code != 0:
        raise UserError(f"{path} {' '.join(argv)} exited {code}")
    return out.getvalue()


# the terms the scripts print that a student may not know, each defined in README.md's
# Glossary (tests/test_readme.py checks it); the settings line points there first
GLOSSARY = ("LoRA", "QLoRA", "-100", "Adapter", "Trainable parameters", "Token",
            "Training / dev loss", "Overfitting", "Epoch", "Example-passes", "Demo",
            "bootstrapped", "Checkpoint", "Train / dev / test", "Seed", "Elicitation",
            "Strict accuracy", "word-overlap F1", "95% interval", "Exact McNemar p",
            "More than noise / within noise", "bf16 / fp32", "Cache hits excluded",
            "p10 / p90", "Over 65,536")


def print_config(console, cfg) -> None:
    """The settings that differ from the defaults, as options (all of them go into results)."""
    from .results import RESULTS_DIR, portable
    from .settings import with_results_dir
    chosen = with_results_dir(dataclasses.replace(cfg, results_dir=None)).results_dir
    changed = [f"--{f.name.replace('_', '-')} {getattr(cfg, f.name)}"
               if not isinstance(f.default, bool) else
               f"--{'' if getattr(cfg, f.name) else 'no-'}{f.name.replace('_', '-')}"
               for f in dataclasses.fields(cfg) if getattr(cfg, f.name) != f.default
               and not (f.name == "results_dir" and getattr(cfg, f.name) == chosen)]
    say(console, "settings: ", " ".join(changed) if changed else
        "the defaults (--help lists them and why)")
    say(console, "words: ", "every term this output uses (strict accuracy, exact McNemar p, "
        "95% interval, -100, bf16, example-passes, ...) is explained in README.md, Glossary")
    if chosen != str(RESULTS_DIR) and cfg.results_dir == chosen:
        say(console, "results: ", f"{portable(Path(chosen))}/ (not the README's results/: "
            "these settings are not the defaults; --results-dir results to replace them)")


def print_versions(console, versions: dict) -> None:
    console.print("versions: " + ", ".join(f"{k} {v}" for k, v in versions.items()))


def step(console, number: int, title: str) -> None:
    console.rule(f"Step {number}. {title}", style="bold")


def redact(secret: str) -> str:
    """Enough of a key to tell which one is set, never the key itself."""
    return f"{secret[:3]}...{secret[-2:]} ({len(secret)} chars)" if len(secret) > 8 else "***"


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


def notice(console, text: str) -> None:
    """The line that ends a step: what this run's numbers show, in words."""
    if text:
        say(console, "What to notice: ", text)


def say(console, label: str, text: str = "") -> None:
    """One line: a bold label, then text shown literally."""
    from rich.text import Text
    console.print(Text.assemble((visible(label), "bold"), visible(text)))
