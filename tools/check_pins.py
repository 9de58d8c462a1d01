"""Fail when an environment lost a pin of its requirements file; print what is installed.

    python tools/check_pins.py requirements-colab.txt

Used by `make venv-colab` after skiplab is installed into the Colab environment: a plain
`pip install -e .` must keep every `name==version` pin (as `%pip install` does in Colab).
Also runs `pip check`.
"""

import re
import subprocess
import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

PIN = re.compile(r"^\s*([A-Za-z0-9_.\-]+)\s*==\s*([^\s;#]+)")


def main(path: str) -> int:
    pins = [m.groups() for line in Path(path).read_text().splitlines() if (m := PIN.match(line))]
    wrong = []
    for name, wanted in pins:
        try:
            have = version(name)
        except PackageNotFoundError:
            have = "missing"
        print(f"  {name:<12} {have:<10} (pinned {wanted})")
        if have != wanted:
            wrong.append(f"{name} {have} (pinned {wanted})")
    for name in ("skiplab", "scikit-learn", "mnist1d", "pytest"):
        try:
            print(f"  {name:<12} {version(name)}")
        except PackageNotFoundError:
            wrong.append(f"{name} missing")
    print(f"  python       {sys.version.split()[0]}")
    check = subprocess.run([sys.executable, "-m", "pip", "check"], capture_output=True, text=True)
    if check.returncode != 0:
        wrong.append("pip check: " + check.stdout.strip())
    if wrong:
        print(f"{path}: not as pinned:\n  " + "\n  ".join(wrong), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
