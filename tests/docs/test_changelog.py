"""The version follows the changelog: ``pyproject.toml``, ``ratemw.__version__`` and the
top of ``CHANGELOG.md`` (Keep a Changelog) say the same thing."""

from __future__ import annotations

import re
import sys

import ratemw
from tests.docs.examples import ROOT

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

_SECTION = re.compile(r"^## \[(?P<name>[^\]]+)\](?: - (?P<date>\d{4}-\d{2}-\d{2}))?\s*$", re.M)
_VERSION = re.compile(r"^(?P<release>\d+\.\d+\.\d+)(?:\.dev\d+)?$")


def _pyproject_version() -> str:
    with open(ROOT / "pyproject.toml", "rb") as f:
        return str(tomllib.load(f)["project"]["version"])


def test_pyproject_and_package_agree() -> None:
    assert _pyproject_version() == ratemw.__version__


def test_changelog_top_section_matches_the_version() -> None:
    text = (ROOT / "CHANGELOG.md").read_text(encoding="utf-8")
    assert text.startswith("# Changelog\n")
    assert "keepachangelog.com" in text
    sections = [(m["name"], m["date"]) for m in _SECTION.finditer(text)]
    assert sections, "no '## [...]' section"
    version = _VERSION.match(ratemw.__version__)
    assert version is not None, f"{ratemw.__version__} is not X.Y.Z or X.Y.Z.devN"
    released = [name for name, date in sections if name != "Unreleased"]
    for name, date in sections[1:] if sections[0][0] == "Unreleased" else sections:
        assert date is not None, f"release {name} has no date"
    if ".dev" in ratemw.__version__:
        # Between releases: changes pile up under Unreleased, towards a newer version.
        assert sections[0] == ("Unreleased", None)
        assert version["release"] not in released, f"{version['release']} is already released"
    else:
        top = sections[1] if sections[0][0] == "Unreleased" else sections[0]
        assert top[0] == ratemw.__version__
