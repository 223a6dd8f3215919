"""The standalone HTML report, opened in a real headless Chromium.

Skips with a clear reason when Chromium is not installed (Debian: ``apt-get install
chromium``; ``.ci/run`` installs it).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
from fixtures.records import binary_record, write
from PIL import Image

from bench.cli import main
from bench.records import RunRecord
from bench.report import table1

CHROMIUM = next(
    (shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome") if shutil.which(n)),
    None,
)
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
]


def _leaky(record: dict) -> dict:
    for cell in record["cells"][:2]:
        cell["split"] = {"kind": "paper-leaky", "folds": 5, "holdout": None, "leaky": True}
    return record


@pytest.fixture
def report_html(tmp_path: Path) -> tuple[Path, dict]:
    record = _leaky(binary_record())
    path = write(record, tmp_path)
    out = tmp_path / "report.html"
    assert main(["report", str(path), "--format", "html", "--out", str(out)]) == 0
    return out, record


def test_page_is_one_self_contained_document(report_html):
    out, record = report_html
    text = out.read_text(encoding="utf-8")
    assert text.startswith("<!DOCTYPE html>") and text.rstrip().endswith("</html>")
    assert "<style>" in text and 'name="viewport"' in text and "@media print" in text
    assert not re.search(r'(src|href)="(?!data:)[^"#]', text)  # nothing loaded from elsewhere
    assert text.count("data:image/svg+xml;base64,") >= 6  # figures embedded
    assert text.count('class="leaky"') >= 2 and "LEAKY" in text
    assert record["dataset"]["fingerprint"] in text  # provenance
    assert "Table 2" in text and "Confusion matrices" in text


@pytest.mark.skipif(CHROMIUM is None, reason="Chromium not installed (apt-get install chromium)")
def test_page_renders_in_chromium_with_the_numbers_in_the_dom(report_html, tmp_path):
    out, record = report_html
    profile = tmp_path / "profile"
    url = out.resolve().as_uri()
    dom = subprocess.run(
        [
            CHROMIUM,
            *FLAGS,
            f"--user-data-dir={profile}",
            "--enable-logging=stderr",
            "--v=0",
            "--virtual-time-budget=5000",
            "--dump-dom",
            url,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert dom.returncode == 0, dom.stderr[-2000:]
    console = [line for line in dom.stderr.splitlines() if "CONSOLE" in line]
    assert not console, console  # no console errors or warnings
    assert "Failed to load resource" not in dom.stderr
    table = table1(RunRecord.from_json(record, "fixture"))[0]
    for row in table.rows:
        for value in row[2:]:  # every estimate with its interval is in the DOM
            assert value.replace("[", "").split()[0] in dom.stdout
    assert dom.stdout.count('class="leaky"') >= 2

    shot = tmp_path / "page.png"
    run = subprocess.run(
        [
            CHROMIUM,
            *FLAGS,
            f"--user-data-dir={profile}",
            "--window-size=1280,2000",
            f"--screenshot={shot}",
            url,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0 and shot.exists(), run.stderr[-2000:]
    with Image.open(shot) as im:
        grey = im.convert("L")
        assert im.size == (1280, 2000)
        assert (
            len(
                set(
                    grey.get_flattened_data()
                    if hasattr(grey, "get_flattened_data")
                    else grey.getdata()
                )
            )
            > 50
        )  # text, tables and figures, not a blank page

    phone = tmp_path / "phone.png"
    run = subprocess.run(
        [
            CHROMIUM,
            *FLAGS,
            f"--user-data-dir={profile}",
            "--window-size=390,844",
            f"--screenshot={phone}",
            url,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0 and phone.exists()


def test_report_html_to_stdout_is_the_same_page(tmp_path, capsys):
    path = write(binary_record(), tmp_path)
    assert main(["report", str(path), "--format", "html"]) == 0
    assert capsys.readouterr().out.startswith("<!DOCTYPE html>")


@pytest.mark.skipif(CHROMIUM is None, reason="Chromium not installed (apt-get install chromium)")
def test_the_console_check_sees_errors(tmp_path):
    bad = tmp_path / "bad.html"
    bad.write_text(
        '<!DOCTYPE html><html><body>x<script>console.error("boom")</script></body></html>'
    )
    dom = subprocess.run(
        [
            CHROMIUM,
            *FLAGS,
            f"--user-data-dir={tmp_path / 'p'}",
            "--enable-logging=stderr",
            "--v=0",
            "--virtual-time-budget=2000",
            "--dump-dom",
            bad.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert any("CONSOLE" in line and "boom" in line for line in dom.stderr.splitlines())


def test_leaderboard_html_is_a_standalone_page(tmp_path):
    results = tmp_path / "results"
    results.mkdir()
    write(binary_record(), results)
    write(_leaky(binary_record(seeds=(3,))), results, name="leaky")
    out = tmp_path / "lb.html"
    argv = ["leaderboard", str(results), "--format", "html", "--out", str(out)]
    assert main([*argv, "--include-synthetic", "--include-leaky"]) == 0
    text = out.read_text(encoding="utf-8")
    assert text.startswith("<!DOCTYPE html>") and "<style>" in text
    assert 'class="leaky"' in text and "leaderboard" in text.lower()
    if CHROMIUM is not None:
        dom = subprocess.run(
            [
                CHROMIUM,
                *FLAGS,
                f"--user-data-dir={tmp_path / 'p'}",
                "--enable-logging=stderr",
                "--v=0",
                "--dump-dom",
                out.as_uri(),
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert dom.returncode == 0 and "<table" in dom.stdout
        assert not [line for line in dom.stderr.splitlines() if "CONSOLE" in line]
