"""Code capture (runs in the helper): git repository, branch, commit, uncommitted diff, entry point.

Uses the ``git`` command with argv lists (no shell) rather than GitPython, whose import alone
costs about 200 ms. Outside a repository the script's own text is stored instead.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

MAX_INLINE_DIFF = 1024 * 1024
"""A larger diff is stored as the artifact ``code.diff`` instead of inline."""
MAX_CODE = 5 * 1024 * 1024


def strip_credentials(url: str) -> str:
    """``https://user:token@host/repo`` -> ``https://host/repo``; ``git@host:repo`` is kept."""
    if "://" not in url:
        return url
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment))


def _git(cwd: str, *args: str) -> str | None:
    try:
        result = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=30,
                                errors="replace", env={**os.environ, "GIT_TERMINAL_PROMPT": "0", "LC_ALL": "C"})
    except (OSError, subprocess.TimeoutExpired):
        return None
    return result.stdout if result.returncode == 0 else None


def capture_code(script: str, cwd: str, large_diff_path: Path) -> tuple[dict[str, Any], Path | None]:
    """Describe where the running code came from.

    Args:
        script: absolute path of the entry script ("" for ``python -c``/interactive).
        cwd: the process's working directory.
        large_diff_path: where to write a diff too large to store inline.

    Returns:
        the task's ``script`` fields, and the path of the large diff file when one was written.
    """
    where = str(Path(script).parent) if script else cwd
    root = _git(where, "rev-parse", "--show-toplevel")
    if root is None:
        code = ""
        if script:
            try:
                code = Path(script).read_text(encoding="utf-8", errors="replace")[:MAX_CODE]
            except OSError:
                code = ""
        return {"entry_point": Path(script).name if script else "", "working_dir": cwd, "code": code}, None
    root = root.strip()
    remote = (_git(root, "remote") or "").split()
    url = (_git(root, "remote", "get-url", "origin" if "origin" in remote else remote[0]) or "").strip() if remote else ""
    commit = (_git(root, "rev-parse", "HEAD") or "").strip()
    branch = (_git(root, "rev-parse", "--abbrev-ref", "HEAD") or _git(root, "symbolic-ref", "--short", "HEAD") or "").strip()
    diff = _git(root, "diff", "HEAD") if commit else _git(root, "diff", "--cached")
    untracked = [line for line in (_git(root, "ls-files", "--others", "--exclude-standard") or "").splitlines() if line]
    fields: dict[str, Any] = {
        "repository": strip_credentials(url), "branch": branch, "commit": commit,
        "entry_point": os.path.relpath(script, root) if script else "",
        "working_dir": os.path.relpath(cwd, root), "untracked": untracked[:10_000],
    }
    large: Path | None = None
    diff = diff or ""
    if len(diff.encode()) > MAX_INLINE_DIFF:
        large_diff_path.write_text(diff, encoding="utf-8")
        large = large_diff_path
        fields["diff"] = f"# uncommitted diff of {len(diff.encode())} bytes stored as artifact 'code.diff'\n"
    else:
        fields["diff"] = diff
    return fields, large
