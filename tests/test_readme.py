"""README's commands are the ones CI runs."""

import subprocess
from pathlib import Path

from conftest import ROOT


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    command = ci[ci.index("# README: test command") + 1]
    assert command in readme
    assert "pytest" in command and "requirements-model.txt" in command


def test_readme_results_section_is_generated_from_the_results_files(capsys, tmp_path):
    """Every number in README's results section comes from results/*.json via report.py.

    The scripts rewrite results/ each time they run, so after a user's own runs (without
    `python report.py`) the section is checked against the committed results files (git),
    which it was made from. A hand-edited number matches neither."""
    import report
    if committed_results_differ() and report_check([]) != 0:
        committed = tmp_path / "results"  # the whole tree: seeds/ and exercises/ feed it too
        for name in git("ls-files", "results").split():
            path = committed / Path(name).relative_to("results")
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(git_bytes("show", f"HEAD:{name}"))
        assert report_check(["--results-dir", str(committed)]) == 0
    else:
        report.main(["--check"])  # raises SystemExit(1) when the section was edited by hand
        assert "numbers match" in capsys.readouterr().out


def report_check(argv: list[str]) -> int:
    import report
    try:
        report.main(["--check", *argv])
    except SystemExit as exit:
        return exit.code
    return 0


def git(*args: str) -> str:
    return git_bytes(*args).decode()


def git_bytes(*args: str) -> bytes:
    return subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True,
                          check=True).stdout


def committed_results_differ() -> bool:
    """True in a git checkout whose results/ the scripts have rewritten since the commit."""
    try:
        return bool(git("status", "--porcelain", "--", "results").strip())
    except (OSError, subprocess.CalledProcessError):
        return False  # not a git checkout: the files as they are


def test_glossary_defines_every_term_the_settings_line_points_to():
    """The scripts' first lines send a student to README.md's Glossary for the terms the
    output prints (edu_qa.cli.GLOSSARY); each of them is defined there, in bold."""
    from edu_qa.cli import GLOSSARY
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    defined = text[text.index("## The metric"):text.index("## Where to go next")].lower()
    missing = [term for term in GLOSSARY if f"**{term.lower()}**" not in defined]
    assert not missing, f"README.md's Glossary lacks: {missing}"
