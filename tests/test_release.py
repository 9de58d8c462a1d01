"""One version, written once: skiplab.__version__. CITATION.cff and CHANGELOG.md repeat it for
their readers; these tests point at whichever of them a release bump forgot (README, "Releases").
The repository's address lives in _config.yml; CITATION.cff's copy must match it."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))
import setup_cell  # noqa: E402

VERSION = setup_cell.version()  # skiplab.__version__, read without importing torch
RELEASE = re.compile(r"^## \[(\d+\.\d+\.\d+)\] - (\d{4}-\d{2}-\d{2})\s*$", re.MULTILINE)


def citation() -> dict:
    return yaml.safe_load((ROOT / "CITATION.cff").read_text(encoding="utf8"))


def releases() -> list[tuple[str, str]]:
    return RELEASE.findall((ROOT / "CHANGELOG.md").read_text(encoding="utf8"))


def test_the_package_reports_the_version_written_in_init():
    import skiplab

    assert skiplab.__version__ == VERSION


def test_citation_has_the_packages_version_and_the_configs_repository():
    cff = citation()
    assert cff["cff-version"] == "1.2.0"
    assert str(cff["version"]) == VERSION, (
        f"CITATION.cff says version {cff['version']}, skiplab.__version__ is {VERSION}")
    assert cff["repository-code"] == setup_cell.repository(), (
        "CITATION.cff's repository-code differs from _config.yml's repository.url")
    for key in ("message", "title", "authors", "date-released", "license"):
        assert cff.get(key), f"CITATION.cff has no {key}"
    assert set(cff["license"]) == {"MIT", "CC-BY-4.0"}


def test_changelogs_newest_release_is_the_packages_version_released_on_the_citations_date():
    found = releases()
    assert found, "CHANGELOG.md has no `## [x.y.z] - YYYY-MM-DD` heading"
    newest, date = found[0]
    assert newest == VERSION, f"CHANGELOG.md's newest release is {newest}, skiplab is {VERSION}"
    assert date == str(citation()["date-released"])
    versions = [tuple(map(int, v.split("."))) for v, _ in found]
    assert versions == sorted(versions, reverse=True), "CHANGELOG.md: newest release first"


def test_licences_are_stated_in_the_files_and_the_books_footer():
    assert (ROOT / "LICENSE").read_text().startswith("MIT License")
    cc = (ROOT / "LICENSE-CC-BY-4.0").read_text()
    assert "https://creativecommons.org/licenses/by/4.0/" in cc
    footer = yaml.safe_load((ROOT / "_config.yml").read_text())["html"]["extra_footer"]
    assert "MIT" in footer and "https://creativecommons.org/licenses/by/4.0/" in footer
