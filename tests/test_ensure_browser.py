"""tools/ensure_browser.py on a simulated fresh machine: no browser, with and without root.

Nothing here touches the system: /usr/bin/chromium, PATH, Playwright's folder, apt-get, sudo
and the venv's Python are all stand-ins in tmp_path.
"""

from __future__ import annotations

import os
import stat
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))
import ensure_browser  # noqa: E402


def script(path: Path, body: str) -> Path:
    path.write_text("#!/bin/sh\n" + body + "\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return path


@pytest.fixture
def fresh(tmp_path, monkeypatch):
    """A machine with no browser: nothing at the Debian path, an empty PATH folder (apart from
    the stand-ins a test adds), no Playwright download, SKIPLAB_CHROMIUM unset."""
    bin_ = tmp_path / "bin"
    bin_.mkdir()
    monkeypatch.setattr(ensure_browser, "DEBIAN_CHROMIUM", tmp_path / "usr-bin-chromium")
    monkeypatch.setenv("PATH", str(bin_))
    monkeypatch.setenv("PLAYWRIGHT_BROWSERS_PATH", str(tmp_path / "ms-playwright"))
    monkeypatch.delenv("SKIPLAB_CHROMIUM", raising=False)
    log = tmp_path / "calls.log"
    # a venv Python whose Playwright download fails at once, as it does with no network
    python = script(tmp_path / "python", f'echo "python $*" >> {log}\n'
                    'case "$*" in *"playwright install"*) echo "ENOTFOUND" >&2; exit 1;; esac')
    return bin_, python, log


def test_without_root_or_sudo_it_stops_at_once_saying_how_to_get_a_browser(
        fresh, monkeypatch, capsys):
    bin_, python, log = fresh
    monkeypatch.setattr(ensure_browser.os, "geteuid", lambda: 1000)
    script(bin_ / "sudo", f'echo "sudo $*" >> {log}\necho "a password is required" >&2; exit 1')
    script(bin_ / "apt-get", f'echo "apt-get $*" >> {log}')
    start = time.monotonic()
    status = ensure_browser.main(["ensure", "--npm", "--python", str(python)])
    assert time.monotonic() - start < 10
    assert status == 1
    err = capsys.readouterr().err
    assert "no Chromium for the browser tests" in err
    assert "sudo apt-get install chromium" in err and "SKIPLAB_CHROMIUM=" in err
    assert "npm is missing" in err
    calls = log.read_text().splitlines()
    assert "sudo -n true" in calls  # asked sudo without a password prompt ...
    assert not any(c.startswith("apt-get") for c in calls)  # ... and installed nothing
    assert any("playwright install chromium" in c for c in calls)  # then tried Playwright


def test_as_root_it_installs_debians_packages_and_reports_the_browser(fresh, monkeypatch, capsys):
    bin_, python, log = fresh
    monkeypatch.setattr(ensure_browser.os, "geteuid", lambda: 0)
    # apt-get "installs" chromium and npm into the PATH folder
    script(bin_ / "apt-get", f'echo "apt-get $*" >> {log}\n'
           f'case "$*" in *install*) printf "#!/bin/sh\\n" > {bin_}/chromium; '
           f'printf "#!/bin/sh\\n" > {bin_}/npm; /bin/chmod +x {bin_}/chromium {bin_}/npm;; esac')
    assert ensure_browser.main(["ensure", "--npm", "--python", str(python)]) == 0
    assert capsys.readouterr().out.strip().endswith(f"browser: {bin_ / 'chromium'}")
    assert log.read_text().splitlines() == ["apt-get update -qq",
                                            "apt-get install -y -qq chromium npm"]
    assert ensure_browser.find_chromium() == bin_ / "chromium"


def test_a_found_browser_installs_nothing_and_the_debian_one_comes_first(
        fresh, tmp_path, monkeypatch, capsys):
    bin_, python, log = fresh
    script(bin_ / "chromium", "")
    script(bin_ / "npm", "")
    script(bin_ / "apt-get", f'echo "apt-get $*" >> {log}')
    assert ensure_browser.main(["ensure", "--npm", "--python", str(python)]) == 0
    assert not log.exists()
    assert ensure_browser.find_chromium() == bin_ / "chromium"
    debian = script(tmp_path / "usr-bin-chromium", "")
    assert ensure_browser.find_chromium() == debian


def test_playwrights_download_is_found(fresh, tmp_path):
    chrome = tmp_path / "ms-playwright" / "chromium-1255" / "chrome-linux64" / "chrome"
    chrome.parent.mkdir(parents=True)
    script(chrome, "")
    assert ensure_browser.find_chromium() == chrome


def test_skiplab_chromium_names_the_browser_and_a_wrong_one_is_an_error(
        fresh, tmp_path, monkeypatch, capsys):
    bin_, python, log = fresh
    script(bin_ / "chromium", "")
    mine = script(tmp_path / "my-chrome", "")
    monkeypatch.setenv("SKIPLAB_CHROMIUM", str(mine))
    assert ensure_browser.find_chromium() == mine
    monkeypatch.setenv("SKIPLAB_CHROMIUM", str(tmp_path / "no-such-chrome"))
    assert ensure_browser.find_chromium() is None
    assert ensure_browser.main(["ensure", "--python", str(python)]) == 1
    assert "SKIPLAB_CHROMIUM=" in capsys.readouterr().err
    assert not log.exists()  # nothing installed, no download tried


def test_the_command_line_runs_with_the_system_python_before_the_venv_exists(tmp_path):
    """`make test` runs it with $(PYTHON) (standard library only), as a user without sudo."""
    import subprocess

    bin_ = tmp_path / "bin"
    bin_.mkdir()
    env = dict(os.environ, PATH=str(bin_), PLAYWRIGHT_BROWSERS_PATH=str(tmp_path / "pw"),
               SKIPLAB_CHROMIUM=str(tmp_path / "none"))
    done = subprocess.run([sys.executable, "-S", str(ROOT / "tools" / "ensure_browser.py")],
                          env=env, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 1 and "no Chromium found" in done.stderr
