"""Put a task's code on disk: clone its repository at the recorded commit and apply the diff, or
write the stored script when the task has no repository.

Git runs with the agent's own environment, so credentials (SSH agent, credential helpers,
``GIT_ASKPASS``) stay on the agent's host and are never stored on the server. Names recorded by
the task (entry point, working dir) never leave the checkout: absolute paths and ``..`` are refused.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from fleetdeck.errors import FleetdeckError
from fleetdeck.fleet.executors.base import CommandFailed, run_command


class CodeError(FleetdeckError):
    """The task's code could not be put on disk (bad record, clone or diff failure)."""


@dataclass(frozen=True)
class Checkout:
    """Where a task's code is and how to start it."""

    root: Path
    """The checkout (repository root or the folder holding the stored script)."""
    cwd: Path
    """Where the job starts (``script.working_dir`` inside ``root``)."""
    entry_point: str
    """The script to run, relative to ``cwd``."""


def relative_inside(value: str, what: str) -> PurePosixPath:
    """A recorded relative path that stays inside its folder; raises CodeError otherwise."""
    path = PurePosixPath(value or ".")
    if path.is_absolute() or ".." in path.parts or "\x00" in value:
        raise CodeError(f"{what} {value!r} must be a relative path inside the checkout")
    return path


def prepare(script: dict[str, Any], target: Path, timeout_s: float | None = None,
            cancel: threading.Event | None = None) -> Checkout:
    """Write the task's code into ``target`` (which must not exist yet).

    Args:
        script: the task's ``script`` section, with ``diff`` and ``code`` (``GET /tasks/ID``).
        target: a new folder for the checkout.
        timeout_s: limit for every git command.
        cancel: set when the task is aborted; a running git command is killed.

    Raises:
        CodeError: nothing to run, a bad path, or git failed (its error line is in the message).
    """
    if script.get("repository"):
        entry = str(relative_inside(script.get("entry_point") or "", "entry point"))
        working_dir = relative_inside(script.get("working_dir") or "", "working dir")
        _clone(script, target, timeout_s, cancel)
    elif script.get("code"):
        # A stored script runs from its own folder; where it ran before (an absolute working dir
        # on another machine) means nothing here, so only the file name is kept.
        working_dir = PurePosixPath(".")
        entry = PurePosixPath(script.get("entry_point") or "script.py").name or "script.py"
        target.mkdir(parents=True)
        (target / entry).write_text(script["code"], encoding="utf-8")
    else:
        raise CodeError("the task records neither a repository nor the script's code; nothing to run")
    if entry in ("", "."):
        raise CodeError("the task records no entry point (script.entry_point)")
    cwd = target / working_dir
    if not (cwd / entry).is_file():
        raise CodeError(f"entry point {entry!r} is not in the checkout (working dir {str(working_dir)!r})")
    return Checkout(root=target, cwd=cwd, entry_point=entry)


def _clone(script: dict[str, Any], target: Path, timeout_s: float | None, cancel: threading.Event | None) -> None:
    repository = script["repository"]
    if repository.startswith("-"):
        raise CodeError(f"repository {repository!r} is not a URL or path")
    _git(["clone", "--quiet", "--no-checkout", "--", repository, str(target)], None, timeout_s, cancel=cancel)
    revision = script.get("commit") or script.get("branch") or "HEAD"
    if revision.startswith("-"):
        raise CodeError(f"commit {revision!r} is not a revision")
    _git(["checkout", "--quiet", "--detach", revision, "--"], target, timeout_s, cancel=cancel)
    diff = script.get("diff") or ""
    if diff.strip():
        _git(["apply", "--whitespace=nowarn", "-"], target, timeout_s, cancel=cancel,
             stdin=diff if diff.endswith("\n") else diff + "\n")


def _git(args: list[str], cwd: Path | None, timeout_s: float | None, stdin: str | None = None,
         cancel: threading.Event | None = None) -> None:
    env = {**os.environ, "GIT_TERMINAL_PROMPT": "0"}  # never hang on a password prompt
    try:
        run_command(["git", *args], f"git {args[0]}", timeout_s=timeout_s, cancel=cancel, cwd=cwd, env=env,
                    stdin=stdin)
    except CommandFailed as exc:
        raise CodeError(str(exc)) from None
