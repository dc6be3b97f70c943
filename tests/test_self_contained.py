"""The project is self-contained: no code, test or doc reads or names a path outside the
repository, and every relative link in the docs lands on a file inside it."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
#: Folders that are not the project's own files (installed or generated).
SKIPPED = {".git", ".venv", ".mypy_cache", ".ruff_cache", ".pytest_cache", ".hypothesis"}
TEXT_SUFFIXES = {".py", ".md", ".toml", ".cfg", ".txt", ".yaml", ".yml", ".json", ".sh", ".js"}
TEXT_NAMES = {"Makefile", "run", ".flake8", ".gitignore"}

# Built from pieces, so that this file does not name what it looks for.
_UP = re.escape("..") + "/"
OUTSIDE = [
    (re.compile(_UP + "shared"), "a folder beside the checkout"),
    (re.compile(r"\bshared/(yagna-api|reference|seed|hooks)\b"), "a folder beside the checkout"),
    (re.compile("DAEMON" + "-NOTES"), "a document that is not in the repository"),
    (re.compile(r"\bDESIGN(\.md)?\s*" + "\u00a7"), "a document that is not in the repository"),
    (re.compile(r"(?<![\w.])/" + "work/"), "an absolute path of one machine"),
]
#: ``Path(__file__)`` climbing: ``.parents[N]`` or ``.parent.parent...``.
FILE_PARENTS = re.compile(r"Path\(__file__\)(?:\.resolve\(\))?\.parents\[(\d+)\]")
FILE_PARENT_CHAIN = re.compile(r"Path\(__file__\)(?:\.resolve\(\))?((?:\.parent(?!s))+)")
NAMED_PARENT_CHAIN = re.compile(r"(_HERE)((?:\.parent(?!s))+)")
MARKDOWN_LINK = re.compile(r"\]\(([^)\s]+)\)")


def project_files() -> list[Path]:
    """The repository's files: git's list in a clone, else a walk that skips installed
    folders."""
    if (ROOT / ".git").exists():
        listed = subprocess.run(
            ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            cwd=ROOT,
            capture_output=True,
            check=True,
            timeout=30,
        ).stdout.decode()
        return sorted(ROOT / name for name in listed.split("\0") if name)
    found = []
    for folder, dirs, files in os.walk(ROOT):
        dirs[:] = [d for d in dirs if d not in SKIPPED]
        found += [Path(folder) / name for name in files]
    return sorted(found)


def text_files() -> list[Path]:
    return [
        path
        for path in project_files()
        if (path.suffix in TEXT_SUFFIXES or path.name in TEXT_NAMES) and path.is_file()
    ]


def test_the_scan_sees_the_whole_project() -> None:
    names = {path.relative_to(ROOT).as_posix() for path in text_files()}
    assert {"README.md", "Makefile", "golem_trio/cli.py", "tests/test_self_contained.py"} <= names
    assert "docs/architecture.md" in names
    assert "docs/daemon-notes.md" in names


def test_nothing_names_a_path_outside_the_repository() -> None:
    found = []
    for path in text_files():
        for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
            for pattern, what in OUTSIDE:
                if pattern.search(line):
                    where = path.relative_to(ROOT)
                    found.append(f"{where}:{number}: {what}: {line.strip()[:120]}")
    assert found == []


def climbed(path: Path, line: str) -> list[Path]:
    """The folders ``line`` of ``path`` reaches by climbing from its own file."""
    reached = [path.parents[int(m[1])] for m in FILE_PARENTS.finditer(line)]
    for match in FILE_PARENT_CHAIN.finditer(line):
        reached.append(path.parents[match[1].count(".parent") - 1])
    for match in NAMED_PARENT_CHAIN.finditer(line):  # _HERE = Path(__file__).parent
        reached.append(path.parents[match[2].count(".parent")])
    return reached


def test_no_code_climbs_out_of_the_repository() -> None:
    outside = []
    for path in text_files():
        if path.suffix != ".py":
            continue
        for number, line in enumerate(path.read_text().splitlines(), 1):
            for folder in climbed(path, line):
                if not folder.is_relative_to(ROOT):
                    outside.append(f"{path.relative_to(ROOT)}:{number}: {folder}")
    assert outside == []


@pytest.mark.parametrize(
    ("line", "levels"),
    [
        # Split, so that the scan of this file does not take them for its own climbing.
        ("ROOT = Path(__file__)" + ".resolve().parents[3]", 4),
        ("X = Path(__file__)" + ".parent.parent", 2),
        ("_REPO = _HERE" + ".parent.parent", 3),
    ],
)
def test_the_climb_check_counts_levels(line: str, levels: int) -> None:
    deep = ROOT / "a" / "b" / "c" / "file.py"
    assert climbed(deep, line) == [deep.parents[levels - 1]]


def test_every_relative_link_in_the_docs_lands_inside_the_repository() -> None:
    broken = []
    for path in text_files():
        if path.suffix != ".md":
            continue
        for target in MARKDOWN_LINK.findall(path.read_text()):
            if re.match(r"[a-z]+:", target) or target.startswith("#"):
                continue  # a web address, or an anchor in the same page
            resolved = (path.parent / target.split("#", 1)[0]).resolve()
            if not resolved.is_relative_to(ROOT) or not resolved.exists():
                broken.append(f"{path.relative_to(ROOT)}: {target}")
    assert broken == []
