"""Datasets view: versions as a lineage tree, their sizes, a diff between two versions, and the
experiments that used each version.

Import path: ``fleetdeck.app.tui.screens.datasets.DatasetsScreen`` (constructed with a
:class:`fleetdeck.client.Client`; the app mounts it as the ``datasets`` mode).

The tree groups versions by ``project/name``; a version hangs under each of its parents (a merge
of several parents shows under each, marked ``merge``). Moving the cursor shows the version's
details, the tasks that read it (``Enter`` opens one) and its diff against its parents; ``m``
marks a version as the base, so the diff then reads "from the marked version to this one".
The list polls every 15 s; details load in a thread for the version under the cursor only.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, ClassVar

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.widgets import DataTable, Label, Static, Tree
from textual.widgets.tree import TreeNode

from fleetdeck._dataset_progress import human_bytes
from fleetdeck.app.tui.fmt import literal
from fleetdeck.app.tui.messages import OpenTask
from fleetdeck.app.tui.polling import Poller
from fleetdeck.app.tui.screens.base import ViewScreen
from fleetdeck.client import Client
from fleetdeck.errors import FleetdeckError

LIST_POLL_S = 15.0
DIFF_ROWS = 500
"""Diff rows shown; the counts above the table are always complete."""


@dataclass(frozen=True)
class VersionDetail:
    """What the right-hand panes show for one version."""

    dataset_id: str
    base_id: str | None
    readers: list[dict[str, Any]]
    added: list[str]
    modified: list[str]
    removed: list[str]


def lineage(versions: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Children of each version id, and roots under ``""`` (no parent in the list), oldest first."""
    known = {v["id"] for v in versions}
    children: dict[str, list[dict[str, Any]]] = {"": []}
    for version in sorted(versions, key=lambda v: (v["project_name"], v["name"], v["version"])):
        parents = [p for p in version["parents"] if p in known]
        for parent in parents or [""]:
            children.setdefault(parent, []).append(version)
    return children


def version_label(version: dict[str, Any]) -> Text:
    label = Text(f"v{version['version']} ", style="bold")
    label.append(version["status"], style="green" if version["status"] == "final" else "yellow")
    label.append(f"  {version['files']:,} files  {human_bytes(version['size'])}")
    label.append(f"  +{version['added']} ~{version['modified']} -{version['removed']}", style="dim")
    if len(version["parents"]) > 1:
        label.append("  merge", style="magenta")
    if version["tags"]:
        label.append("  " + ",".join(version["tags"]), style="cyan")
    return label


class DatasetsScreen(ViewScreen):
    """Lineage tree on the left; details, readers and diff of the selected version on the right."""

    DEFAULT_CSS = """
    DatasetsScreen #datasets-tree { width: 2fr; border-right: solid $panel; }
    DatasetsScreen #datasets-right { width: 3fr; }
    DatasetsScreen #datasets-info { height: auto; max-height: 9; padding: 0 1; }
    DatasetsScreen #datasets-readers { height: 1fr; }
    DatasetsScreen #datasets-diff { height: 2fr; }
    DatasetsScreen Label { padding: 0 1; color: $text-muted; }
    """
    BINDINGS: ClassVar[list[Binding]] = [  # type: ignore[assignment]
        Binding("m", "mark_base", "Mark as diff base", id="datasets.mark"),
        Binding("c", "clear_base", "Diff vs parents", id="datasets.clear"),
        Binding("r", "refresh", "Refresh", id="datasets.refresh"),
        Binding("tab", "switch_pane", "Switch pane", id="datasets.switch", show=False),
    ]

    def __init__(self, client: Client) -> None:
        super().__init__()
        self.client = client
        self.versions: dict[str, dict[str, Any]] = {}
        self.selected: str | None = None
        """Id of the version under the tree cursor."""
        self.base: str | None = None
        """Id of the version marked with ``m``: the diff's "from" side (None: the parents)."""
        self.detail: VersionDetail | None = None
        self._shape: list[tuple[Any, ...]] = []
        self.poller: Poller[list[dict[str, Any]]] = Poller(
            self, self._fetch_list, self._apply_list, self._failed, LIST_POLL_S, "datasets")
        self._detail_poller: Poller[VersionDetail | None] = Poller(
            self, self._fetch_detail, self._apply_detail, self._failed, 0, "dataset-detail")

    def compose_body(self) -> ComposeResult:
        with Horizontal():
            yield Tree("datasets", id="datasets-tree")
            with Vertical(id="datasets-right"):
                yield Static(id="datasets-info")
                yield Label("used by (Enter opens the experiment)")
                yield DataTable(id="datasets-readers", cursor_type="row", zebra_stripes=True)
                yield Label("diff", id="datasets-diff-title")
                yield DataTable(id="datasets-diff", cursor_type="row", zebra_stripes=True)

    def on_mount(self) -> None:
        tree = self.query_one(Tree)
        tree.show_root = False
        readers = self.query_one("#datasets-readers", DataTable)
        for key, title in (("task", "task"), ("name", "name"), ("status", "status"), ("read", "last read")):
            readers.add_column(title, key=key)
        diff = self.query_one("#datasets-diff", DataTable)
        diff.add_column("", key="change")
        diff.add_column("path", key="path")
        tree.focus()
        self.poller.poll_now()

    # -- the version list ------------------------------------------------------------------

    def _fetch_list(self) -> list[dict[str, Any]]:
        return self.client.get("/datasets", page_size=1000)["items"]  # type: ignore[no-any-return]

    def _failed(self, error: FleetdeckError) -> None:
        self.poll_failed(error)
        self.query_one("#datasets-info", Static).update(Text(str(error), style="red"))

    def _apply_list(self, versions: list[dict[str, Any]]) -> None:
        self.poll_succeeded()
        self.versions = {v["id"]: v for v in versions}
        shape = sorted((v["id"], v["status"], v["files"], v["size"], tuple(v["tags"]), tuple(v["parents"]))
                       for v in versions)
        if shape == self._shape:
            return  # unchanged: keep the tree, its expansion and its cursor as they are
        self._shape = shape
        self._rebuild_tree(versions)
        if not versions:
            self.query_one("#datasets-info", Static).update(
                Text("no datasets yet: create one with `fleetdeck data create`", style="dim"))

    def _rebuild_tree(self, versions: list[dict[str, Any]]) -> None:
        tree: Tree[str] = self.query_one(Tree)
        keep = self.selected
        tree.clear()
        children = lineage(versions)
        groups: dict[str, TreeNode[str]] = {}
        cursor_node: TreeNode[str] | None = None

        def add(node: TreeNode[str], version: dict[str, Any], path: tuple[str, ...]) -> None:
            nonlocal cursor_node
            kids = [k for k in children.get(version["id"], []) if k["id"] not in path]
            child = node.add(version_label(version), data=version["id"], expand=True, allow_expand=bool(kids))
            if version["id"] == keep and cursor_node is None:
                cursor_node = child
            for kid in kids:
                add(child, kid, (*path, version["id"]))

        for root in children[""]:
            group_key = f"{root['project_name']}/{root['name']}"
            if group_key not in groups:
                groups[group_key] = tree.root.add(literal(group_key, style="bold"), expand=True)
            add(groups[group_key], root, ())
        tree.root.expand()
        if cursor_node is not None:
            tree.move_cursor(cursor_node)

    # -- the selected version ----------------------------------------------------------------

    @on(Tree.NodeHighlighted, "#datasets-tree")
    def _highlighted(self, event: Tree.NodeHighlighted[str]) -> None:
        dataset_id = event.node.data
        if dataset_id is None or dataset_id == self.selected:
            return
        self.selected = dataset_id
        self._show_info()
        self._detail_poller.poll_now(invalidate=True)

    def _fetch_detail(self) -> VersionDetail | None:
        from fleetdeck.dataset import Dataset

        dataset_id, base_id = self.selected, self.base
        if dataset_id is None:
            return None
        version = Dataset.get(dataset_id=dataset_id, client=self.client, record_lineage=False)
        readers = version.readers()
        if not version.is_final and version.document.get("manifest") is None:
            return VersionDetail(dataset_id, base_id, readers, [], [], [])
        base = None
        if base_id is not None and base_id != dataset_id:
            base = Dataset.get(dataset_id=base_id, client=self.client, record_lineage=False)
        changes = version.diff(base)
        return VersionDetail(dataset_id, base_id if base is not None else None, readers,
                             changes.added, changes.modified, changes.removed)

    def _apply_detail(self, detail: VersionDetail | None) -> None:
        if detail is None or detail.dataset_id != self.selected:
            return
        self.detail = detail
        self._show_info()
        with self.app.batch_update():
            readers = self.query_one("#datasets-readers", DataTable)
            readers.clear()
            now = time.time()
            for reader in detail.readers:
                age = now - reader["last_read"]
                when = f"{int(age)}s ago" if age < 120 else time.strftime("%Y-%m-%d %H:%M",
                                                                          time.localtime(reader["last_read"]))
                readers.add_row(Text(reader["task"][:8]), literal(reader.get("task_name") or "?", limit=60),
                                Text(reader.get("task_status") or "?"), Text(when), key=reader["task"])
            diff = self.query_one("#datasets-diff", DataTable)
            diff.clear()
            rows = sorted([(p, "+", "green") for p in detail.added]
                          + [(p, "~", "yellow") for p in detail.modified]
                          + [(p, "-", "red") for p in detail.removed])
            for path, mark, style in rows[:DIFF_ROWS]:
                diff.add_row(Text(mark, style=style), literal(path, limit=300), key=f"{mark}{path}")
        against = "parents"
        if detail.base_id is not None:
            against = f"{self._describe(detail.base_id)} (marked)"
        shown = f" (first {DIFF_ROWS})" if len(rows) > DIFF_ROWS else ""
        self.query_one("#datasets-diff-title", Label).update(
            f"diff from {against}: +{len(detail.added)} added, ~{len(detail.modified)} modified, "
            f"-{len(detail.removed)} removed{shown}   [m] mark as base  [c] vs parents")

    def _show_info(self) -> None:
        version = self.versions.get(self.selected or "")
        if version is None:
            return
        parents = ", ".join(f"v{self.versions[p]['version']}" if p in self.versions else p[:8]
                            for p in version["parents"]) or "-"
        text = Text()
        text.append(f"{version['project_name']}/{version['name']} v{version['version']}", style="bold")
        text.append(f"  {version['status']}  id {version['id']}\n")
        text.append(f"{version['files']:,} files, {human_bytes(version['size'])}; "
                    f"+{version['added']} ~{version['modified']} -{version['removed']} "
                    f"from parents {parents}\n")
        text.append(f"tags: {', '.join(version['tags']) or '-'}   by {version['user']}   created "
                    f"{time.strftime('%Y-%m-%d %H:%M', time.localtime(version['created']))}")
        if self.base is not None and self.base in self.versions:
            text.append(f"\ndiff base: {self._describe(self.base)}", style="magenta")
        self.query_one("#datasets-info", Static).update(text)

    def _describe(self, dataset_id: str) -> str:
        version = self.versions.get(dataset_id, {})
        return f"v{version.get('version', '?')} of {version.get('name', '?')}"

    # -- actions ---------------------------------------------------------------------------

    def action_mark_base(self) -> None:
        if self.selected is None:
            return
        self.base = self.selected
        self.notify(f"diff base: {self._describe(self.base)}; move to another version to compare")
        self._show_info()
        self._detail_poller.poll_now(invalidate=True)

    def action_clear_base(self) -> None:
        self.base = None
        self._show_info()
        self._detail_poller.poll_now(invalidate=True)

    def action_refresh(self) -> None:
        self.poller.poll_now()
        self._detail_poller.poll_now(invalidate=True)

    def action_switch_pane(self) -> None:
        order = ["datasets-tree", "datasets-readers", "datasets-diff"]
        current = self.focused.id if self.focused is not None and self.focused.id in order else order[-1]
        self.query_one(f"#{order[(order.index(current) + 1) % len(order)]}").focus()

    @on(DataTable.RowSelected, "#datasets-readers")
    def _reader_selected(self, event: DataTable.RowSelected) -> None:
        self.post_message(OpenTask(str(event.row_key.value)))
