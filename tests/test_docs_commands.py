"""Every documented report / leaderboard / compare command runs as written.

Shell blocks (```sh / ```bash) of docs/reports.md and the README's command block
are extracted and run against the committed records, in a scratch directory
holding a copy of ``results/``; placeholders (``results/<run>.json``,
``baseline.json``) become committed records. Synopsis blocks (plain ```) must
name only options the command has.
"""

from __future__ import annotations

import glob
import re
import shlex
import shutil
from pathlib import Path

import pytest

from bench.cli import build_parser, main

REPO = Path(__file__).resolve().parents[1]
REPORTS = REPO / "docs" / "reports.md"
README = REPO / "README.md"
REFERENCE = "results/reference/ci-reference.json"
READ_ONLY = ("report", "leaderboard", "compare")
PLACEHOLDERS = {
    "results/<run>.json": REFERENCE,
    "baseline.json candidate.json": f"{REFERENCE} {REFERENCE}",
    "BASELINE.json CANDIDATE.json": f"{REFERENCE} {REFERENCE}",
    "RESULT.json [...]": REFERENCE,
    "[RESULTS_DIR]": "results",
}


def blocks(path: Path, languages: tuple[str, ...]) -> list[list[str]]:
    """Commands of each fenced block in one of ``languages`` ("" = plain), continuations joined."""
    text = path.read_text(encoding="utf-8")
    out = []
    for lang, body in re.findall(r"^```([a-z]*)\n(.*?)^```", text, flags=re.S | re.M):
        if lang not in languages:
            continue
        body = body.replace("\\\n", " ")
        lines = [line.split(" #")[0].strip() for line in body.splitlines()]
        out.append([line for line in lines if line and not line.startswith("#")])
    return out


def inline_commands(path: Path) -> list[str]:
    return re.findall(r"`(leukobench (?:report|leaderboard|compare) [^`]*)`", path.read_text())


def _argv(command: str) -> list[str]:
    for old, new in PLACEHOLDERS.items():
        command = command.replace(old, new)
    words = shlex.split(command)
    assert words[0] == "leukobench", command
    argv = []
    for word in words[1:]:
        argv += sorted(glob.glob(word)) if any(c in word for c in "*?") else [word]
    return argv


@pytest.fixture
def scratch(tmp_path, monkeypatch):
    shutil.copytree(REPO / "results", tmp_path / "results")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _run(command: str, capsys) -> tuple[int, str]:
    code = main(_argv(command))
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def test_readme_report_commands_run(scratch, capsys):
    (readme_block,) = [b for b in blocks(README, ("bash",)) if any("compare" in c for c in b)]
    commands = [c for c in readme_block if c.split()[1] in READ_ONLY]
    assert {c.split()[1] for c in commands} == set(READ_ONLY)
    for command in commands:
        code, out = _run(command, capsys)
        assert code == 0, f"{command}: exit {code}\n{out}"
    assert list((scratch / "figs").rglob("*.pdf"))
    board = (scratch / "results" / "LEADERBOARD.md").read_text(encoding="utf-8")
    assert board == (REPO / "results" / "LEADERBOARD.md").read_text(encoding="utf-8"), (
        "results/LEADERBOARD.md is stale: leukobench leaderboard results --out results/LEADERBOARD.md"
    )


def test_reports_inline_commands_run(scratch, capsys):
    commands = inline_commands(REPORTS)
    assert commands
    for command in commands:
        code, out = _run(command, capsys)
        assert code == 0, f"{command}: exit {code}\n{out}"


@pytest.mark.slow
def test_reports_ci_snippet_runs_as_written(scratch, capsys):
    (snippet,) = [b for b in blocks(REPORTS, ("sh", "bash")) if any("compare" in c for c in b)]
    assert snippet[0].startswith("leukobench run ci-reference")
    for command in snippet:
        code, out = _run(command, capsys)
        assert code == 0, f"{command}: exit {code}\n{out}"
    assert "no regression" in (scratch / "compare.md").read_text(encoding="utf-8")


def test_synopsis_options_exist():
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    seen = 0
    for block in blocks(REPORTS, ("",)):
        text = " ".join(block)
        for part in re.split(r"(?=\bleukobench )", text):
            words = part.split()
            if len(words) < 2 or words[0] != "leukobench" or words[1] not in sub.choices:
                continue
            known = set(sub.choices[words[1]]._option_string_actions)
            options = set(re.findall(r"(?<![\w-])(--[a-z][a-z-]*)", part))
            assert options <= known, f"leukobench {words[1]}: undocumented {options - known}"
            seen += 1
    assert seen >= 3
