"""The command line every script shares: settings, messages, exit status, literal printing.

    parse_config()   argparse built from a script's Config dataclass (its type hints and each
                     field's help), the kernel's own arguments ignored in a notebook
    run()            bad input -> 'error: FILE:LINE: message', exit 2, no traceback
    console(), say() one console that prints text from data or servers literally
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import typing
import unicodedata


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
            parser.add_argument(flag, type=_optional(kind), default=f.default,
                                choices=f.metadata.get("choices"), help=help_ + default)
    if argv is None and in_notebook():
        argv = []
    return config_cls(**vars(parser.parse_args(argv)))


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
    """True inside a Jupyter kernel, where sys.argv holds the kernel's arguments."""
    return "ipykernel" in sys.modules


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


def say(console, label: str, text: str = "") -> None:
    """One line: a bold label, then text shown literally."""
    from rich.text import Text
    console.print(Text.assemble((visible(label), "bold"), visible(text)))
