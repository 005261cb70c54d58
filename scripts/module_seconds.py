"""Read pytest's ``--durations=0`` lines on stdin and update tests/module_seconds.json with the seconds each test
module took, which tests/conftest.py uses to start the longest modules first (xdist, ``--dist loadscope``).

``python -m pytest -q --durations=0 | python scripts/module_seconds.py`` records a whole run (``seconds``);
``python -m pytest -q -m 'not slow' --durations=0 | python scripts/module_seconds.py --fast`` the fast loop's
(``fast_seconds``: what a module's fast tests take, used when none of its slow tests runs)."""

from __future__ import annotations

import collections
import json
import re
import sys
from pathlib import Path

TABLE = Path(__file__).resolve().parent.parent / "tests" / "module_seconds.json"

LINE = re.compile(r"\s*([\d.]+)s (?:setup|call|teardown)\s+(\S+?)::")


def main() -> None:
    seconds: collections.Counter[str] = collections.Counter()
    for line in sys.stdin:
        if m := LINE.match(line):
            seconds[m.group(2)] += float(m.group(1))
    table = json.loads(TABLE.read_text()) if TABLE.exists() else {}
    table["about"] = (
        "Seconds each test module took (setup + call + teardown of its tests) in a run on a busy 2-core machine: "
        "the whole suite (seconds) and the fast loop (fast_seconds); the suite starts the longest modules first "
        "(tests/conftest.py). Written by scripts/module_seconds.py."
    )
    table["fast_seconds" if "--fast" in sys.argv[1:] else "seconds"] = {
        module: round(s, 1) for module, s in seconds.most_common() if s >= 0.5
    }
    TABLE.write_text(json.dumps(table, indent=1) + "\n")


if __name__ == "__main__":
    main()
