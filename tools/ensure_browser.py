"""Find the Chromium that the browser tests and `make pdf` drive; install one when it is missing.

    python3 tools/ensure_browser.py           # print the browser's path; exit 1 if none
    python3 tools/ensure_browser.py ensure [--npm] [--python .venv/bin/python]

`make test` runs ``ensure`` first (the ``browser`` target), so a machine without a browser stops
within seconds with a message instead of after the quarter hour of notebook execution.

Where a browser is looked for, in order (``find_chromium``):

1. ``$SKIPLAB_CHROMIUM`` when it is set (then only there);
2. Debian's ``/usr/bin/chromium``;
3. ``chromium``, ``chromium-browser``, ``google-chrome`` or ``google-chrome-stable`` on ``PATH``;
4. Playwright's own download (``$PLAYWRIGHT_BROWSERS_PATH``, default ``~/.cache/ms-playwright``).

When none is found, ``ensure`` tries, in order:

1. Debian's ``chromium`` package with ``apt-get``, when the user may install (root, or
   ``sudo -n true`` works without a password);
2. Playwright's browser download (``PYTHON -m playwright install chromium``), which needs
   network access to Playwright's CDN (it fails within seconds where there is none);
3. else it stops (exit 1) with a message saying how to get a browser.

``--npm`` also makes sure ``npm`` is there (the ``vendor`` target fetches the pages' offline
JavaScript with it), by the same ``apt-get`` route (Debian package ``npm``); there is no second
route for npm. Standard library only: it runs with the system Python before the venv exists.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path

DEBIAN_CHROMIUM = Path("/usr/bin/chromium")
ON_PATH = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
# Playwright's Chromium builds: Chrome for Testing (chrome-linux64/chrome) in recent releases,
# chrome-linux/chrome in older ones.
PLAYWRIGHT_GLOBS = ("chromium-*/chrome-linux64/chrome", "chromium-*/chrome-linux/chrome")
PLAYWRIGHT_TIMEOUT_S = 600


def _executable(path: Path) -> bool:
    try:
        return path.is_file() and os.access(path, os.X_OK)
    except OSError:  # e.g. a folder this user may not read
        return False


def playwright_browsers() -> Path:
    """The folder Playwright downloads its browsers into."""
    custom = os.environ.get("PLAYWRIGHT_BROWSERS_PATH")
    if custom and custom != "0":
        return Path(custom).expanduser()
    return Path.home() / ".cache" / "ms-playwright"


def candidates() -> list[Path]:
    """Every place looked at, in order of preference (for messages)."""
    found = [DEBIAN_CHROMIUM]
    for name in ON_PATH:
        where = shutil.which(name)
        if where:
            found.append(Path(where))
    root = playwright_browsers()
    for pattern in PLAYWRIGHT_GLOBS:
        found.extend(sorted(root.glob(pattern), reverse=True))  # newest revision first
    return found


def find_chromium() -> Path | None:
    """The Chromium to drive: ``$SKIPLAB_CHROMIUM`` if set, else the first one found."""
    chosen = os.environ.get("SKIPLAB_CHROMIUM")
    if chosen:
        path = Path(chosen).expanduser()
        return path if _executable(path) else None
    return next((p for p in candidates() if _executable(p)), None)


def _say(message: str, error: bool = True) -> None:
    print(f"ensure_browser.py: {message}", file=sys.stderr if error else sys.stdout, flush=True)


def _may_install() -> list[str] | None:
    """The command prefix that runs apt-get as root ([] or ['sudo', '-n']), or None."""
    if shutil.which("apt-get") is None:
        return None
    if os.geteuid() == 0:
        return []
    sudo = shutil.which("sudo")
    if sudo is None:
        return None
    try:
        ok = subprocess.run([sudo, "-n", "true"], check=False, stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            timeout=20).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        ok = False
    return [sudo, "-n"] if ok else None


def _apt_install(prefix: list[str], packages: list[str]) -> bool:
    _say(f"installing Debian's {' and '.join(packages)} with apt-get", error=False)
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    for command in (["apt-get", "update", "-qq"],
                    ["apt-get", "install", "-y", "-qq", *packages]):
        # apt and dpkg print hundreds of lines even with -qq: show them only when it fails
        done = subprocess.run(prefix + command, check=False, env=env, stdin=subprocess.DEVNULL,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        if done.returncode != 0:
            _say(f"`{' '.join(prefix + command)}` failed:\n{done.stdout[-3000:]}")
            return False
    return True


def _playwright_install(python: str) -> bool:
    if not _executable(Path(python)):
        _say(f"{python} is missing or not usable here: no Playwright download")
        return False
    has = subprocess.run([python, "-c", "import playwright"], check=False,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode == 0
    if not has:
        _say(f"{python} has no playwright: no Playwright download")
        return False
    _say("trying Playwright's own Chromium download", error=False)
    try:
        result = subprocess.run([python, "-m", "playwright", "install", "chromium"],
                                check=False, stdin=subprocess.DEVNULL,
                                timeout=PLAYWRIGHT_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        _say(f"the Playwright download took over {PLAYWRIGHT_TIMEOUT_S} s")
        return False
    return result.returncode == 0


HOW_TO = """\
Get one of these, then run `make test` again:
  - Debian:  sudo apt-get install chromium          (then it is /usr/bin/chromium)
  - Ubuntu and others: a Chromium or Google Chrome package; any binary works if you say where:
             SKIPLAB_CHROMIUM=/path/to/chrome make test
  - with access to Playwright's CDN:  .venv/bin/python -m playwright install chromium
(.ci/run and `make test` install Debian's chromium themselves when run as root or with
password-less sudo.)"""


def ensure(npm: bool, python: str) -> int:
    chosen = os.environ.get("SKIPLAB_CHROMIUM")
    if chosen and find_chromium() is None:
        _say(f"SKIPLAB_CHROMIUM={chosen} is not an executable file.\n{HOW_TO}")
        return 1
    need = ([] if find_chromium() else ["chromium"]) + (
        ["npm"] if npm and shutil.which("npm") is None else [])
    prefix = _may_install() if need else None
    if need and prefix is not None:
        _apt_install(prefix, need)
    problems = []
    if npm and shutil.which("npm") is None:
        problems.append(
            "npm is missing (`make vendor` fetches the pages' offline JavaScript with it) and "
            + ("apt-get could not install it" if prefix is not None else
               "apt-get cannot run as root here (not root, no password-less sudo)")
            + ".\nInstall npm (Debian: `sudo apt-get install npm`; or Node.js from nodejs.org).")
    browser = find_chromium()
    if browser is None and _playwright_install(python):
        browser = find_chromium()
    if browser is None:
        looked = ", ".join(str(p) for p in candidates())
        problems.append(
            f"no Chromium for the browser tests (looked at {looked}, and in "
            f"{playwright_browsers()} for Playwright's), and none could be installed ("
            + ("apt-get failed" if prefix is not None else
               "apt-get needs root or password-less sudo")
            + f"; Playwright's download did not work).\n{HOW_TO}")
    if problems:
        for problem in problems:
            _say(problem)
        return 1
    print(f"browser: {browser}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command")
    ens = sub.add_parser("ensure", help="install a browser (and npm) when missing")
    ens.add_argument("--npm", action="store_true", help="make sure npm is there too")
    ens.add_argument("--python", default=".venv/bin/python",
                     help="the Python with playwright, for its browser download")
    args = parser.parse_args(argv)
    if args.command == "ensure":
        return ensure(args.npm, args.python)
    browser = find_chromium()
    if browser is None:
        _say(f"no Chromium found.\n{HOW_TO}")
        return 1
    print(browser)
    return 0


if __name__ == "__main__":
    sys.exit(main())
