"""README's commands are the ones CI runs."""

from conftest import ROOT


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    command = ci[ci.index("# README: test command") + 1]
    assert command in readme
    assert "pytest" in command and "requirements-model.txt" in command
