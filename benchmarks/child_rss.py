"""Peak resident memory of one ``leukobench`` command, run in a child process.

The child prints its own ``VmHWM`` (ru_maxrss would carry the parent's peak
across fork/exec: Linux keeps ``signal->maxrss`` over execve).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

_CHILD = """
import re, sys
from pathlib import Path
from bench.cli import main
rc = main(sys.argv[1:])
print("PEAK_RSS_KIB", re.search(r"VmHWM:\\s+(\\d+)", Path("/proc/self/status").read_text())[1])
sys.exit(rc)
"""


def peak_rss_bytes(args: list[str], *, cwd: Path | None = None) -> int:
    """Run ``leukobench ARGS`` in a child process; its peak resident set in bytes."""
    out = subprocess.run(
        [sys.executable, "-c", _CHILD, *args], check=True, capture_output=True, text=True, cwd=cwd
    ).stdout
    return int(out.rsplit("PEAK_RSS_KIB", 1)[1].split()[0]) * 1024
