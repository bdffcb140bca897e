"""README's commands are the ones CI runs."""

from conftest import ROOT


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    command = ci[ci.index("# README: test command") + 1]
    assert command in readme
    assert "pytest" in command and "requirements-model.txt" in command


def test_readme_results_section_is_generated_from_the_results_files(capsys):
    """Every number in README's results section comes from results/*.json via report.py."""
    import report
    report.main(["--check"])  # raises SystemExit(1) when the section was edited by hand
    assert "results section matches" in capsys.readouterr().out
