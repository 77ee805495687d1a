"""Every relative link in the repository's Markdown reaches a file, and every #anchor a heading.

The README is short on purpose and sends readers to docs/ and the folders' READMEs; a moved or
renamed page would otherwise leave a link that only a reader finds broken.
"""

from __future__ import annotations

import re
import subprocess
from functools import cache
from pathlib import Path
from urllib.parse import unquote

import pytest

ROOT = Path(__file__).resolve().parents[1]

# [text](target) and ![alt](target); a target ends at whitespace (an optional "title") or ")".
LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
FENCE = re.compile(r"^(```|~~~)")
HEADING = re.compile(r"^#{1,6}\s+(.*?)\s*#*\s*$")


def markdown_files() -> list[Path]:
    """The tracked Markdown files (a clone's untracked notes and .venv are not the project's)."""
    out = subprocess.run(
        ["git", "ls-files", "-z", "--", "*.md"], cwd=ROOT, capture_output=True, check=True
    ).stdout
    return sorted(ROOT / name for name in out.decode().split("\0") if name)


def prose_lines(path: Path) -> list[str]:
    """The lines outside fenced code blocks: a link or a heading inside a code sample is neither."""
    lines, fenced = [], False
    for line in path.read_text(encoding="utf-8").splitlines():
        if FENCE.match(line.lstrip()):
            fenced = not fenced
            continue
        if not fenced:
            lines.append(line)
    return lines


def slug(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, markup and punctuation dropped, spaces to hyphens."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)
    text = text.replace("`", "").lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


@cache
def anchors(path: Path) -> frozenset[str]:
    seen: dict[str, int] = {}
    found = set()
    for line in prose_lines(path):
        match = HEADING.match(line)
        if not match:
            continue
        base = slug(match.group(1))
        count = seen.get(base, 0)
        seen[base] = count + 1
        found.add(base if count == 0 else f"{base}-{count}")
    return frozenset(found)


def broken_links(path: Path, root: Path = ROOT) -> list[str]:
    broken = []
    for line in prose_lines(path):
        for target in LINK.findall(re.sub(r"`[^`]*`", "", line)):
            if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.IGNORECASE):
                continue  # http:, mailto: ...: not a file of the repository
            file_part, _, anchor = target.partition("#")
            resolved = (path.parent / unquote(file_part)).resolve() if file_part else path
            if not resolved.exists():
                broken.append(f"{target} (no such file)")
            elif anchor and resolved.suffix == ".md" and unquote(anchor) not in anchors(resolved):
                broken.append(f"{target} (no heading with that anchor)")
            elif not resolved.is_relative_to(root):
                broken.append(f"{target} (outside the repository)")
    return broken


def test_the_readme_and_docs_are_found() -> None:
    names = {p.relative_to(ROOT).as_posix() for p in markdown_files()}
    assert {"README.md", "docs/design.md", "bench/README.md"} <= names


def test_the_readme_fits_its_budget() -> None:
    """What, two commands, guarantees, where to find what, a few dated figures: under 12 KB and about
    200 lines. History and long tables belong in docs/ and bench/, which it links."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(readme.encode()) < 12_000
    assert len(readme.splitlines()) <= 200


@pytest.mark.parametrize("path", markdown_files(), ids=lambda p: p.relative_to(ROOT).as_posix())
def test_relative_links_resolve(path: Path) -> None:
    assert broken_links(path) == []


def test_a_missing_target_and_a_missing_anchor_are_reported(tmp_path: Path) -> None:
    (tmp_path / "there.md").write_text("# A heading, with `code`\n\n## Twice\n\n## Twice\n")
    page = tmp_path / "page.md"
    page.write_text(
        "[ok](there.md) [ok](there.md#a-heading-with-code) [ok](there.md#twice-1) [web](https://x.y/z)\n"
        "[gone](missing.md) [bad anchor](there.md#nope) ![img](pic.png)\n"
        "```\n[in a fence](nowhere.md)\n```\n`[in code](nowhere.md)`\n"
    )
    assert broken_links(page, root=tmp_path) == [
        "missing.md (no such file)",
        "there.md#nope (no heading with that anchor)",
        "pic.png (no such file)",
    ]
