"""``fleetdeck data create|add|remove|upload|close|list|show|diff|get|verify``: versioned datasets.

The flow follows ``clearml-data``: ``create`` makes a draft and remembers it as the current one,
so ``add``, ``remove``, ``upload`` and ``close`` act on it without repeating its id::

    fleetdeck data create --project vision --name pets --parent vision/pets
    fleetdeck data add ./images --wildcard '*.jpg'
    fleetdeck data remove 'images/old/*'
    fleetdeck data close                       # upload what is new, then finalize

A finalized version is named by its id (or a unique prefix of it) or by ``PROJECT/NAME[@VERSION]``
(the latest finalized version without ``@VERSION``). Hashing, uploading and downloading show rich
progress bars on stderr; stdout carries only the result (an id, a path), so it can be scripted.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.progress import (
    BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn, TransferSpeedColumn,
)
from rich.text import Text

from fleetdeck.app.cli import make_client
from fleetdeck.app.cli.render import ago, console, table
from fleetdeck.config import data_home
from fleetdeck.errors import NotFound

_ID_PREFIX = re.compile(r"^[0-9a-f]{4,32}$")


@click.group()
def data() -> None:
    """Versioned datasets: only changed files are uploaded.

    DATASET is a version id (or a unique prefix of it) or PROJECT/NAME[@VERSION]; without
    @VERSION, the latest finalized version.
    """


@contextmanager
def progress_bars() -> Iterator[Any]:
    """A ``ProgressFactory`` drawing rich progress bars (bytes, speed, time left) on stderr."""
    columns = (TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
               TimeRemainingColumn())
    with Progress(*columns, console=Console(stderr=True)) as bars:
        def factory(description: str, total: int) -> Any:
            task = bars.add_task(description, total=total)
            return lambda n: bars.advance(task, n)

        yield factory


# -- the current draft -------------------------------------------------------------------------


def _current_file() -> Path:
    return data_home() / "dataset-drafts" / "current"


def _draft_id(given: str | None) -> str:
    if given:
        return given
    try:
        return _current_file().read_text().strip()
    except FileNotFoundError:
        raise click.UsageError("no current dataset draft: run 'fleetdeck data create' or pass --id") from None


def _client(ctx: click.Context) -> Any:
    """One client for the whole command, closed when the command ends."""
    client = ctx.meta.get("fleetdeck.data.client")
    if client is None:
        client = ctx.meta["fleetdeck.data.client"] = ctx.with_resource(make_client(ctx))
    return client


def _open(ctx: click.Context, dataset_id: str) -> Any:
    from fleetdeck.dataset import Dataset

    return Dataset.get(dataset_id=dataset_id, client=_client(ctx), record_lineage=False)


def resolve(client: Any, ref: str) -> dict[str, Any]:
    """A version document from an id, a unique id prefix, or ``PROJECT/NAME[@VERSION]``."""
    from fleetdeck.dataset import Dataset

    if "/" not in ref and _ID_PREFIX.match(ref):
        if len(ref) == 32:
            return client.get(f"/datasets/{ref}")
        matches = [d for d in client.get("/datasets", page_size=1000)["items"] if d["id"].startswith(ref)]
        if len(matches) == 1:
            return matches[0]
        if matches:
            raise click.UsageError(f"dataset id prefix {ref!r} is ambiguous ({len(matches)} versions)")
        raise NotFound(f"no dataset version with id starting {ref!r}")
    project, slash, rest = ref.rpartition("/")
    name, _, version = rest.partition("@")
    if not slash or not project or not name:
        raise click.UsageError(f"{ref!r} is neither a dataset id nor PROJECT/NAME[@VERSION]")
    return Dataset.get(dataset_name=name, dataset_project=project, dataset_version=version or None,
                       client=client, record_lineage=False).document


def _dataset(ctx: click.Context, ref: str, *, reading: bool = False) -> Any:
    """The version named by ``ref``; ``reading`` records it as the current task's input (``get``)."""
    from fleetdeck.dataset import Dataset

    client = _client(ctx)
    return Dataset.get(dataset_id=resolve(client, ref)["id"], client=client, record_lineage=reading)


def human(n: int) -> str:
    from fleetdeck._dataset_progress import human_bytes

    return human_bytes(n)


# -- building a version ------------------------------------------------------------------------


@data.command("create")
@click.option("--project", "-p", required=True, help="Project the dataset belongs to.")
@click.option("--name", "-n", required=True, help="Dataset name; versions of a name are numbered 1, 2, ...")
@click.option("--parent", "parents", multiple=True, metavar="DATASET",
              help="Finalized version to start from (id or PROJECT/NAME[@VERSION]; repeatable).")
@click.option("--tag", "-t", "tags", multiple=True, help="Tag of the new version (repeatable).")
@click.option("--description", default="", help="Free text.")
@click.pass_context
def create(ctx: click.Context, project: str, name: str, parents: tuple[str, ...], tags: tuple[str, ...],
           description: str) -> None:
    """Create a draft version and make it the current one; prints its id."""
    from fleetdeck.dataset import Dataset

    client = _client(ctx)
    parent_ids = [resolve(client, p)["id"] for p in parents]
    draft = Dataset.create(name, project, parent_datasets=parent_ids, dataset_tags=tags,
                           description=description, client=client)
    current = _current_file()
    current.parent.mkdir(parents=True, exist_ok=True)
    current.write_text(draft.id)
    click.echo(draft.id)
    click.echo(f"created {project}/{name} version {draft.version} "
               f"(draft, {draft.file_count} files from parents)", err=True)


@data.command("add")
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option("--id", "dataset_id", help="Draft id (default: the current draft).")
@click.option("--wildcard", "-w", multiple=True, help="Only file names matching this pattern (repeatable).")
@click.option("--non-recursive", is_flag=True, help="Do not descend into sub-folders.")
@click.option("--dataset-path", help="Folder inside the dataset to add the files under.")
@click.pass_context
def add(ctx: click.Context, paths: tuple[Path, ...], dataset_id: str | None, wildcard: tuple[str, ...],
        non_recursive: bool, dataset_path: str | None) -> None:
    """Hash files and add them to the draft (new or changed files only count)."""
    draft = _open(ctx, _draft_id(dataset_id))
    changed = 0
    with progress_bars() as bars:
        for path in paths:
            changed += draft.add_files(path, wildcard=list(wildcard) or None, recursive=not non_recursive,
                                       dataset_path=dataset_path, progress=bars)
    click.echo(f"{changed} files added or changed; the draft has {draft.file_count} files "
               f"({human(draft.size)})", err=True)


@data.command("remove")
@click.argument("patterns", nargs=-1, required=True)
@click.option("--id", "dataset_id", help="Draft id (default: the current draft).")
@click.pass_context
def remove(ctx: click.Context, patterns: tuple[str, ...], dataset_id: str | None) -> None:
    """Remove files (a dataset path, a folder, or a pattern such as 'images/*.png') from the draft."""
    draft = _open(ctx, _draft_id(dataset_id))
    removed = sum(draft.remove_files(p) for p in patterns)
    click.echo(f"removed {removed} files; the draft has {draft.file_count} files", err=True)


@data.command("upload")
@click.option("--id", "dataset_id", help="Draft id (default: the current draft).")
@click.pass_context
def upload(ctx: click.Context, dataset_id: str | None) -> None:
    """Upload the content the server does not have yet, and the file list."""
    draft = _open(ctx, _draft_id(dataset_id))
    with progress_bars() as bars:
        stats = draft.upload(progress=bars)
    click.echo(f"uploaded {stats.files_uploaded} files ({human(stats.bytes_uploaded)}); "
               f"{human(stats.bytes_skipped)} already on the server", err=True)


@data.command("close")
@click.option("--id", "dataset_id", help="Draft id (default: the current draft).")
@click.pass_context
def close(ctx: click.Context, dataset_id: str | None) -> None:
    """Upload what is left and finalize the draft: it cannot change afterwards."""
    draft_id = _draft_id(dataset_id)
    draft = _open(ctx, draft_id)
    with progress_bars() as bars:
        stats = draft.upload(progress=bars)
    draft.finalize(auto_upload=False)
    if _current_file().is_file() and _current_file().read_text().strip() == draft_id:
        _current_file().unlink()
    click.echo(draft.id)
    changes = draft.diff().counts()
    click.echo(f"finalized {draft.project}/{draft.name} version {draft.version}: {draft.file_count} files, "
               f"{human(draft.size)}; +{changes['added']} ~{changes['modified']} -{changes['removed']}; "
               f"uploaded {human(stats.bytes_uploaded)}", err=True)


# -- reading -----------------------------------------------------------------------------------


@data.command("list")
@click.option("--project", "-p", help="Only this project.")
@click.option("--name", "-n", help="Only this dataset name.")
@click.option("--tag", "-t", "tags", multiple=True, help="Only versions with all these tags.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON lines instead of a table.")
@click.pass_context
def list_versions(ctx: click.Context, project: str | None, name: str | None, tags: tuple[str, ...],
                  as_json: bool) -> None:
    """List dataset versions, newest first."""
    with make_client(ctx) as client:
        items = client.get("/datasets", project=project, name=name, tag=list(tags) or None,
                           page_size=1000)["items"]
    if as_json:
        for item in items:
            click.echo(json.dumps(item))
        return
    now = time.time()
    console.print(table(
        ["ID", "PROJECT", "NAME", "VER", "STATUS", "FILES", "SIZE", "CHANGES", "TAGS", "CREATED"],
        ([d["id"][:8], d["project_name"], d["name"], d["version"], d["status"], d["files"], human(d["size"]),
          f"+{d['added']} ~{d['modified']} -{d['removed']}", ",".join(d["tags"]), ago(d["created"], now)]
         for d in items)))
    if not items:
        console.print(Text("no dataset versions match", style="dim"))


@data.command("show")
@click.argument("ref", metavar="DATASET")
@click.option("--files", "show_files", is_flag=True, help="List every file with its size.")
@click.option("--json", "as_json", is_flag=True, help="Print the version document as JSON.")
@click.pass_context
def show(ctx: click.Context, ref: str, show_files: bool, as_json: bool) -> None:
    """Describe a version: counts, parents, tags, and the tasks that read it."""
    dataset = _dataset(ctx, ref)
    doc = dataset.document
    if as_json:
        click.echo(json.dumps(doc))
        return
    rows = [("id", doc["id"]), ("dataset", f"{doc['project_name']}/{doc['name']} version {doc['version']}"),
            ("status", doc["status"]), ("files", f"{doc['files']} ({human(doc['size'])})"),
            ("changes", f"+{doc['added']} added, ~{doc['modified']} modified, -{doc['removed']} removed"),
            ("parents", ", ".join(doc["parents"]) or "-"), ("tags", ", ".join(doc["tags"]) or "-"),
            ("created", f"{ago(doc['created'])} by {doc['user']}"), ("manifest", doc["manifest"] or "-")]
    readers = dataset.readers()
    used_by = ", ".join(f"{r['task_name']} ({r['task'][:8]}, {r['task_status']})" for r in readers)
    rows.append(("used by", used_by or "no task yet"))
    console.print(table(["FIELD", "VALUE"], rows))
    if show_files:
        console.print(table(["PATH", "SIZE", "SHA256"],
                            ((p, human(dataset.file_entry(p).size), dataset.file_entry(p).sha256[:12])
                             for p in dataset.list_files())))


@data.command("diff")
@click.argument("ref", metavar="DATASET")
@click.argument("other", metavar="[OTHER]", required=False)
@click.pass_context
def diff(ctx: click.Context, ref: str, other: str | None) -> None:
    """Files added (+), modified (~) and removed (-) from OTHER (default: the parents) to DATASET."""
    dataset = _dataset(ctx, ref)
    changes = dataset.diff(_dataset(ctx, other) if other else None)
    lines = sorted([(p, "+") for p in changes.added] + [(p, "~") for p in changes.modified]
                   + [(p, "-") for p in changes.removed])
    for path, mark in lines:
        click.echo(f"{mark} {path}")
    counts = changes.counts()
    click.echo(f"{counts['added']} added, {counts['modified']} modified, {counts['removed']} removed",
               err=True)


@data.command("get")
@click.argument("ref", metavar="DATASET")
@click.option("--copy", "target", type=click.Path(path_type=Path),
              help="Write a writable copy here instead of returning the shared read-only cache.")
@click.option("--overwrite", is_flag=True, help="With --copy: write into a folder that is not empty.")
@click.pass_context
def get(ctx: click.Context, ref: str, target: Path | None, overwrite: bool) -> None:
    """Download a version (parents merged) and print the folder that holds it.

    Run inside a task ($FLEETDECK_TASK_ID set, as on an agent), the version is recorded as
    the task's input.
    """
    dataset = _dataset(ctx, ref, reading=True)
    with progress_bars() as bars:
        if target is None:
            path = dataset.get_local_copy(progress=bars)
        else:
            path = dataset.get_mutable_local_copy(target, overwrite=overwrite, progress=bars)
    click.echo(path)


@data.command("verify")
@click.argument("ref", metavar="DATASET")
@click.option("--path", type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="A copy made with 'get --copy' (default: the cached copy).")
@click.option("--no-repair", is_flag=True, help="Only report; do not fetch damaged or missing files again.")
@click.pass_context
def verify(ctx: click.Context, ref: str, path: Path | None, no_repair: bool) -> None:
    """Re-hash a local copy against the version and repair what differs; exit 1 if damage remains."""
    dataset = _dataset(ctx, ref)
    with progress_bars() as bars:
        report = dataset.verify(path, repair=not no_repair, progress=bars)
    found = (("corrupted", report.corrupted), ("missing", report.missing), ("extra", report.extra))
    for label, paths in found:
        for item in paths:
            fixed = " (repaired)" if item in report.repaired else ""
            click.echo(f"{label}: {item}{fixed}")
    click.echo(f"checked {report.checked} files: {len(report.corrupted)} corrupted, "
               f"{len(report.missing)} missing, {len(report.extra)} extra, {len(report.repaired)} repaired",
               err=True)
    if not report.ok:
        raise click.exceptions.Exit(1)

