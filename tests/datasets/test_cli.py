"""``fleetdeck data ...`` end to end against a real server, as a user would type it."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from fleetdeck.app.cli import main
from fleetdeck.server_lite.process import ServerProcess

from .trees import read_tree, write_tree


Fd = Callable[..., tuple[int, str, str]]


@pytest.fixture
def fd(server: ServerProcess, capsys: pytest.CaptureFixture[str]) -> Fd:
    """Run ``fleetdeck --server URL --token T ARGS...``; returns (exit code, stdout, stderr)."""

    def run(*args: str) -> tuple[int, str, str]:
        capsys.readouterr()
        try:
            main(["--server", server.url, "--token", server.admin_token, *args])
            code = 0
        except SystemExit as exc:
            code = int(exc.code or 0)
        out, err = capsys.readouterr()
        return code, out, err

    return run


def test_build_two_versions_then_diff_get_and_verify(fd: Fd, name: str, tmp_path: Path) -> None:
    src = write_tree(tmp_path / "src", {"img/a.png": b"a" * 300, "img/b.png": b"b" * 300,
                                        "img/notes.txt": b"skip me", "old.csv": b"1,2"})
    code, out, err = fd("data", "create", "--project", "cli", "--name", name)
    assert code == 0, err
    v1 = out.strip()
    assert "version 1 (draft" in err
    assert fd("data", "add", str(src / "img"), "--wildcard", "*.png", "--dataset-path", "img")[0] == 0
    code, _, err = fd("data", "add", str(src / "old.csv"))
    assert code == 0 and "the draft has 3 files" in err
    assert "hashing 1 files" in err and "3/3 bytes" in err, "a progress bar for hashing"
    code, out, err = fd("data", "close")
    assert code == 0 and out.strip() == v1 and "finalized" in err and "+3 ~0 -0" in err

    code, out, err = fd("data", "create", "--project", "cli", "--name", name, "--parent", f"cli/{name}")
    assert code == 0, err
    (src / "img/a.png").write_bytes(b"A" * 300)
    (src / "img/c.png").write_bytes(b"c" * 300)
    assert fd("data", "add", str(src / "img"), "--wildcard", "*.png", "--dataset-path", "img")[0] == 0
    assert "removed 1 files" in fd("data", "remove", "old.csv")[2]
    code, out, err = fd("data", "upload")
    assert code == 0 and "uploaded 2 files (600 B)" in err and "300 B already on the server" in err
    assert "uploading 2 files" in err, "a progress bar for uploading"
    code, v2, _ = fd("data", "close")
    v2 = v2.strip()

    code, out, _ = fd("data", "diff", f"cli/{name}@2", v1[:10])
    assert code == 0
    assert out.splitlines() == ["~ img/a.png", "+ img/c.png", "- old.csv"]
    code, out, _ = fd("data", "list", "--project", "cli", "--name", name, "--json")
    listed = [json.loads(line) for line in out.splitlines()]
    assert [(d["id"], d["version"], d["added"], d["modified"], d["removed"]) for d in listed] == \
        [(v2, 2, 1, 1, 1), (v1, 1, 3, 0, 0)]
    code, out, _ = fd("data", "show", v2[:8], "--files")
    assert code == 0 and "img/c.png" in out and "no task yet" in out

    code, out, _ = fd("data", "get", f"cli/{name}")
    expected = {"img/a.png": b"A" * 300, "img/b.png": b"b" * 300, "img/c.png": b"c" * 300}
    assert code == 0 and read_tree(out.strip()) == expected
    copy = tmp_path / "copy"
    assert fd("data", "get", v2, "--copy", str(copy))[0] == 0
    (copy / "img/b.png").write_bytes(b"x")
    code, out, _ = fd("data", "verify", v2, "--path", str(copy), "--no-repair")
    assert code == 1 and "corrupted: img/b.png" in out
    code, out, _ = fd("data", "verify", v2, "--path", str(copy))
    assert code == 0 and "corrupted: img/b.png (repaired)" in out
    assert read_tree(copy) == expected


def test_user_mistakes_are_one_line_with_exit_2(fd: Fd, name: str, tmp_path: Path) -> None:
    code, _, err = fd("data", "add", str(tmp_path))
    assert code == 2 and "no current dataset draft" in err
    code, _, err = fd("data", "get", f"cli/{name}-missing")
    assert (code, err.strip()) == \
        (2, f"error: no finalized version of dataset '{name}-missing' in project 'cli'")
    code, _, err = fd("data", "get", "not a reference")
    assert code == 2 and "neither a dataset id nor PROJECT/NAME" in err

    outside = write_tree(tmp_path / "outside", {"secret": b"s"})
    root = write_tree(tmp_path / "root", {"a": b"a"})
    os.symlink(outside / "secret", root / "link")
    assert fd("data", "create", "--project", "cli", "--name", name)[0] == 0
    code, _, err = fd("data", "add", str(root))
    assert code == 2 and "symlink leading out of" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
