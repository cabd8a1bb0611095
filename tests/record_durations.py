"""Write tests/durations.json, the seconds each test file took in a full run, from that run's JUnit report.

    PYTEST_ADDOPTS=--junitxml=build/junit.xml make test
    .venv/bin/python tests/record_durations.py build/junit.xml

`tests/conftest.py` hands the files to the two test processes longest first; refresh the file when tests are added
or their cost changes a lot (a file not in it counts as a minute).
"""

from __future__ import annotations

import json
import sys
import xml.etree.ElementTree as ET
from collections import defaultdict
from pathlib import Path

OUT = Path(__file__).with_name("durations.json")


def file_seconds(report: Path) -> dict[str, float]:
    """Seconds per test file (`tests/test_x.py`), setup and teardown included, longest first."""
    seconds: dict[str, float] = defaultdict(float)
    for case in ET.parse(report).getroot().iter("testcase"):
        module = case.get("classname", "").split(".")
        if len(module) >= 2 and module[0] == "tests":
            seconds[f"tests/{module[1]}.py"] += float(case.get("time", 0))
    return dict(sorted(((f, round(s, 1)) for f, s in seconds.items()), key=lambda item: -item[1]))


if __name__ == "__main__":
    OUT.write_text(json.dumps(file_seconds(Path(sys.argv[1])), indent=1) + "\n")
    print(f"wrote {OUT}")
