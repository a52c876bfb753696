"""Putting a task's code on disk: a real git repository at a recorded commit plus its diff, or a stored script."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from fleetdeck.fleet.code import CodeError, prepare


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, text=True).stdout.strip()


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    repo = tmp_path / "origin"
    (repo / "src").mkdir(parents=True)
    _git(repo, "init", "-q", "-b", "main")
    _git(repo, "config", "user.email", "t@example.com")
    _git(repo, "config", "user.name", "t")
    (repo / "src" / "train.py").write_text("LR = 0.1\n")
    _git(repo, "add", ".")
    _git(repo, "commit", "-q", "-m", "v1")
    return repo


def test_clone_at_recorded_commit_and_apply_the_uncommitted_diff(repo: Path, tmp_path: Path) -> None:
    recorded = _git(repo, "rev-parse", "HEAD")
    (repo / "src" / "train.py").write_text("LR = 0.5\n")
    diff = _git(repo, "diff") + "\n"
    _git(repo, "commit", "-qam", "v2 (after the run was recorded)")
    (repo / "src" / "train.py").write_text("LR = 9.9\n")  # later uncommitted work must not leak in
    script = {"repository": str(repo), "commit": recorded, "diff": diff, "entry_point": "train.py",
              "working_dir": "src"}
    checkout = prepare(script, tmp_path / "run")
    assert checkout.cwd == tmp_path / "run" / "src" and checkout.entry_point == "train.py"
    assert (checkout.cwd / "train.py").read_text() == "LR = 0.5\n"
    assert _git(checkout.root, "rev-parse", "HEAD") == recorded


def test_stored_script_is_written_under_its_own_name(tmp_path: Path) -> None:
    checkout = prepare({"code": "print(1)\n", "entry_point": "/home/me/exp/train.py",
                        "working_dir": "/home/me/exp"}, tmp_path / "run")
    assert checkout.cwd == tmp_path / "run" and (checkout.cwd / "train.py").read_text() == "print(1)\n"


@pytest.mark.parametrize("script, message", [
    ({"entry_point": "x.py"}, "neither a repository nor the script's code"),
    ({"repository": "REPO", "entry_point": "../../etc/passwd"}, "must be a relative path inside the checkout"),
    ({"repository": "REPO", "entry_point": "train.py", "working_dir": "/abs"}, "must be a relative path"),
    ({"repository": "REPO", "entry_point": "train.py", "working_dir": "src", "commit": "f" * 40},
     "git checkout failed: "),
    ({"repository": "REPO", "entry_point": "missing.py", "working_dir": "src"}, "entry point 'missing.py' is not"),
    ({"repository": "REPO", "entry_point": "train.py", "working_dir": "src", "diff": "not a diff"},
     "git apply failed: "),
])
def test_bad_records_fail_in_one_line(repo: Path, tmp_path: Path, script: dict, message: str) -> None:
    script = {k: (str(repo) if v == "REPO" else v) for k, v in script.items()}
    with pytest.raises(CodeError, match=message) as err:
        prepare(script, tmp_path / "run")
    assert "\n" not in str(err.value)


def test_unreachable_repository_names_the_git_error(tmp_path: Path) -> None:
    with pytest.raises(CodeError, match=r"^git clone failed: .*does not exist"):
        prepare({"repository": str(tmp_path / "nowhere"), "entry_point": "a.py"}, tmp_path / "run")
