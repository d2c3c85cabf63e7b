"""The run record: run.json's git commit is the checkout's `git rev-parse HEAD`, marked
`-dirty` when tracked files differ from it, and None outside a git checkout."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

import vitmae.runs.folder
from vitmae.runs.folder import RunDir, git_commit

pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="needs the git command")


def git(repo: Path, *args: str) -> str:
    out = subprocess.run(["git", "-c", "user.name=test", "-c", "user.email=test@example.com",
                          "-c", "commit.gpgsign=false", *args], cwd=repo, check=True,
                         capture_output=True, text=True)
    return out.stdout.strip()


@pytest.fixture
def checkout(tmp_path, monkeypatch) -> Path:
    """A git repository with two commits whose pkg/folder.py `vitmae.runs.folder` believes to
    be; -> the repository."""
    repo = tmp_path / "repo"
    (repo / "pkg").mkdir(parents=True)
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))
    git(repo, "init", "-q")
    for text in ("one", "two"):  # HEAD~1 and HEAD differ: a test can tell them apart
        (repo / "pkg" / "folder.py").write_text(text)
        git(repo, "add", "pkg/folder.py")
        git(repo, "commit", "-q", "-m", text)
    monkeypatch.setattr(vitmae.runs.folder, "__file__", str(repo / "pkg" / "folder.py"))
    return repo


def _recorded(tmp_path) -> str | None:
    run = RunDir.create(str(tmp_path / "runs"), "r", "finetune", "digits", {})
    return json.loads((run.path / "run.json").read_text())["git_commit"]


def test_the_record_holds_the_checkouts_head(checkout, tmp_path):
    head = git(checkout, "rev-parse", "HEAD")
    assert len(head) == 40 and head != git(checkout, "rev-parse", "HEAD~1")
    (checkout / "notes.txt").write_text("untracked files do not make it dirty")
    assert _recorded(tmp_path) == head


def test_a_changed_tracked_file_marks_the_commit_dirty(checkout, tmp_path):
    head = git(checkout, "rev-parse", "HEAD")
    (checkout / "pkg" / "folder.py").write_text("changed")
    assert _recorded(tmp_path) == f"{head}-dirty"


def test_outside_a_checkout_there_is_no_commit(tmp_path, monkeypatch):
    (tmp_path / "pkg").mkdir()
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))
    monkeypatch.setattr(vitmae.runs.folder, "__file__", str(tmp_path / "pkg" / "folder.py"))
    assert git_commit() is None


def test_this_source_tree_records_its_own_head():
    """Where the tests run from a git checkout (as in development and CI), the commit is that
    checkout's HEAD."""
    src = Path(vitmae.runs.folder.__file__).parent
    out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=src, capture_output=True, text=True)
    if out.returncode != 0:
        pytest.skip("the package is not in a git checkout")
    assert git_commit().removesuffix("-dirty") == out.stdout.strip()
