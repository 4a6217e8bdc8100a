"""The documentation: docs/ builds as a site with every internal link and anchor sound, and the
README's links into docs/ land on a page and a heading that exist."""

import re
import subprocess
import sys

import pytest

from tests.helpers import REPO

pytestmark = pytest.mark.e2e


def test_the_docs_build_strictly(tmp_path):
    built = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
                           cwd=REPO, capture_output=True, text=True, timeout=120, check=False)
    assert built.returncode == 0, built.stderr[-3000:]
    assert (tmp_path / "site" / "operating" / "index.html").is_file()


def github_anchors(markdown: str) -> set[str]:
    """The anchors GitHub gives a page's headings (and its explicit <a id> ones)."""
    anchors = set(re.findall(r'<a id="([^"]+)"></a>', markdown))
    in_fence = False
    for line in markdown.splitlines():
        if line.startswith("```"):
            in_fence = not in_fence
        elif not in_fence and (heading := re.match(r"^#{1,6} (.*)$", line)):
            anchors.add(re.sub(r"[^\w\s-]", "", heading.group(1).replace("`", "")).strip().lower().replace(" ", "-"))
    return anchors


def test_the_readmes_links_into_docs_land_on_a_page_and_a_heading():
    readme = (REPO / "README.md").read_text()
    assert set(re.findall(r"\]\(#([\w-]+)\)", readme)) <= github_anchors(readme)  # its own sections
    links = re.findall(r"\]\((docs/[\w.-]+\.md)(?:#([\w-]+))?\)", readme)
    assert links
    for page, anchor in links:
        target = REPO / page
        assert target.is_file(), page
        assert not anchor or anchor in github_anchors(target.read_text()), f"{page}#{anchor}"
