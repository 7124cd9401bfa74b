"""The documentation: the site builds in strict mode, the API page's examples run, links hold.

``mkdocs build --strict`` (mkdocs.yml) fails on a link to a missing page, file or anchor and on
a page under docs/ that the nav leaves out; docs/api.md's ``>>>`` examples run as doctests; and
README.md stays a short page whose relative links, like every page's, name existing files.
"""
from __future__ import annotations

import contextlib
import doctest
import io
import os
import pathlib
import re
import subprocess
import sys

import pytest

from tests.conftest import REPO

DOCS = REPO / "docs"
README = REPO / "README.md"
MAX_README_LINES = 200
# The make targets the README's quick start gives, as CI runs them (.ci/run runs `make test`).
QUICK_START = ("make run      # stylize the bundled cat in the style of The Starry Night -> stylized.png",
               "make test     # the whole test suite")


def test_the_site_builds_in_strict_mode(tmp_path):
    mkdocs = pathlib.Path(sys.executable).with_name("mkdocs")
    if not mkdocs.exists():
        pytest.skip("mkdocs is not installed: pip install -e '.[docs]' (make test installs it)")
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}  # mkdocs-material's end-of-life notice
    result = subprocess.run([str(mkdocs), "build", "--strict", "--config-file", str(REPO / "mkdocs.yml"),
                             "--site-dir", str(tmp_path / "site")],
                            cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert (tmp_path / "site" / "index.html").is_file()
    assert (tmp_path / "site" / "api" / "index.html").is_file()


def test_the_api_page_examples_run():
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        failed, attempted = doctest.testfile(
            str(DOCS / "api.md"), module_relative=False, globs={}, report=True,
            optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert failed == 0, out.getvalue()
    assert attempted >= 30, f"only {attempted} examples found in docs/api.md"


def test_the_readme_is_short_and_keeps_the_quick_start():
    text = README.read_text()
    lines = text.count("\n")
    assert lines <= MAX_README_LINES, f"README.md has {lines} lines; keep it to {MAX_README_LINES}"
    for line in QUICK_START:
        assert line in text, f"the README's quick start lost {line!r}"


FENCE = re.compile(r"^(```|~~~).*?^\1", re.M | re.S)
CODE_SPAN = re.compile(r"`[^`\n]*`")
# [text](target) and ![alt](target), the target up to a space (a title) or the closing bracket.
LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")


def relative_links(path: pathlib.Path) -> list[str]:
    """The relative link targets of a Markdown file (outside code), without their #anchor."""
    text = CODE_SPAN.sub("", FENCE.sub("", path.read_text()))
    targets = []
    for target in LINK.findall(text):
        if re.match(r"[a-z][a-z0-9+.-]*:", target, re.I) or target.startswith("#"):
            continue  # http:, mailto: ...; an anchor on the same page (the strict build checks those)
        targets.append(target.split("#", 1)[0])
    return targets


def markdown_files() -> list[pathlib.Path]:
    return [README, *sorted(DOCS.rglob("*.md"))]


def test_every_relative_link_names_an_existing_file():
    missing = [f"{path.relative_to(REPO)}: {target}"
               for path in markdown_files() for target in relative_links(path)
               if not (path.parent / target).exists()]
    assert not missing, "links to files that do not exist:\n" + "\n".join(missing)
    readme_links = relative_links(README)
    assert any(t.startswith("docs/") for t in readme_links), "the README links to no page of docs/"


def test_the_link_check_sees_links():
    page = DOCS / "index.md"
    assert "usage.md" in relative_links(page) and "images/before_after.jpg" in relative_links(page)
