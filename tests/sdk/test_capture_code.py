"""Code capture in real git repositories."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from fleetdeck._capture_code import MAX_INLINE_DIFF, capture_code, strip_credentials


@pytest.mark.parametrize(("url", "clean"), [
    ("https://user:tok@github.com/a/b.git", "https://github.com/a/b.git"),
    ("https://oauth2:glpat-x@gitlab.example.com:8443/a/b", "https://gitlab.example.com:8443/a/b"),
    ("git@github.com:a/b.git", "git@github.com:a/b.git"),
    ("ssh://git@host/a/b", "ssh://host/a/b"),
])
def test_strip_credentials(url: str, clean: str) -> None:
    assert strip_credentials(url) == clean


def _repo(path: Path) -> Path:
    path.mkdir()
    for args in (["init", "-q", "-b", "dev"], ["config", "user.email", "t@e"], ["config", "user.name", "t"]):
        subprocess.run(["git", *args], cwd=path, check=True)
    return path


def test_large_diff_becomes_a_file(tmp_path: Path) -> None:
    repo = _repo(tmp_path / "repo")
    (repo / "data.txt").write_text("x\n")
    subprocess.run(["git", "add", "."], cwd=repo, check=True)
    subprocess.run(["git", "commit", "-q", "-m", "c"], cwd=repo, check=True)
    (repo / "data.txt").write_text("line of a big change\n" * (MAX_INLINE_DIFF // 20))
    (repo / "sub").mkdir()
    script = repo / "sub" / "train.py"
    script.write_text("print(1)\n")
    fields, large = capture_code(str(script), str(repo / "sub"), tmp_path / "code.diff")
    assert large is not None and large.stat().st_size > MAX_INLINE_DIFF
    assert "stored as artifact 'code.diff'" in fields["diff"]
    assert fields["entry_point"] == "sub/train.py" and fields["working_dir"] == "sub"
    assert fields["branch"] == "dev" and fields["untracked"] == ["sub/train.py"]


def test_repository_without_commits(tmp_path: Path) -> None:
    repo = _repo(tmp_path / "fresh")
    script = repo / "train.py"
    script.write_text("print(1)\n")
    subprocess.run(["git", "add", "train.py"], cwd=repo, check=True)
    fields, large = capture_code(str(script), str(repo), tmp_path / "code.diff")
    assert large is None and fields["commit"] == "" and "+print(1)" in fields["diff"]
