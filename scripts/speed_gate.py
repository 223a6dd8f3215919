"""Compare two saved pytest-benchmark runs on one screen; exit 1 when one got slower.

    python scripts/speed_gate.py BASELINE.json CANDIDATE.json [--fail mean:15%]

BASELINE/CANDIDATE are files pytest-benchmark saved (``--benchmark-autosave`` puts
them under ``.benchmarks/<machine>/NNNN_*.json``; ``--benchmark-json FILE`` anywhere).
Rows, noise and verdicts as ``pytest benchmarks --benchmark-compare`` prints them
(``benchmarks/speed_summary.py``). Exit 0: nothing slower; 1: slower beyond the
check and the noise; 2: unreadable input.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from speed_summary import DEFAULT_CHECK, Check, compare, render  # noqa: E402


def _load(path: Path) -> list[dict]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        benchmarks = data["benchmarks"]
        for b in benchmarks:
            b["fullname"], b["stats"]["rounds"]  # noqa: B018 - shape check
        return benchmarks
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise SystemExit(f"speed_gate: {path}: not a pytest-benchmark JSON file ({exc})") from None


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("baseline", type=Path)
    p.add_argument("candidate", type=Path)
    p.add_argument("--fail", default=DEFAULT_CHECK, help="check, e.g. mean:15%% or median:0.002")
    args = p.parse_args(argv)
    try:
        check = Check.parse(args.fail)
        base, cand = _load(args.baseline), _load(args.candidate)
    except (ValueError, SystemExit) as exc:
        print(exc, file=sys.stderr)
        return 2
    rows, only_base, only_cand = compare(base, cand, check)
    print(render(rows, check, only_base, only_cand))
    return 1 if any(r.failed for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
