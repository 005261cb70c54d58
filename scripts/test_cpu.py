"""Sum the CPU seconds per test module from a suite run with FARM_TEST_CPU set (tests/conftest.py writes one JSON
line per test): ``FARM_TEST_CPU=/tmp/cpu.jsonl python -m pytest -q; python scripts/test_cpu.py /tmp/cpu.jsonl``.
A CPU-bound suite on a small machine is as fast as the CPU its tests spend, whatever the parallelism."""

from __future__ import annotations

import collections
import json
import sys


def main() -> None:
    per_module: collections.Counter[str] = collections.Counter()
    per_test: collections.Counter[str] = collections.Counter()
    with open(sys.argv[1]) as lines:
        for line in lines:
            row = json.loads(line)
            spent = row["own"] + row["children"]
            per_test[row["test"]] += spent
            per_module[row["test"].split("::", 1)[0]] += spent
    print(f"total {sum(per_module.values()):.0f} CPU-s in {len(per_test)} tests")
    for module, spent in per_module.most_common(int(sys.argv[2]) if len(sys.argv) > 2 else 30):
        print(f"{spent:8.1f}  {module}")


if __name__ == "__main__":
    main()
