"""The Datasets view in the real app (Textual Pilot) against a real server."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from textual.widgets import DataTable, Tree

from fleetdeck import Dataset
from fleetdeck.app.tui.screens.datasets import DatasetsScreen, lineage
from fleetdeck.client import Client
from tests.app.pilot import drive, make_app, until

from .trees import write_tree


def _versions(client: Client, name: str, tmp_path: Path) -> tuple[Dataset, Dataset, Dataset, dict[str, Any]]:
    src = write_tree(tmp_path / "src", {"a.txt": b"a", "b.txt": b"b", "c.txt": b"c"})
    v1 = Dataset.create(name, "tui", client=client)
    v1.add_files(src)
    v1.finalize()
    v2 = Dataset.create(name, "tui", parent_datasets=[v1], client=client)
    (src / "a.txt").write_bytes(b"A")
    (src / "d.txt").write_bytes(b"d")
    v2.add_files(src)
    v2.remove_files("b.txt")
    (src / "b.txt").unlink()
    v2.finalize()
    v3 = Dataset.create(name, "tui", parent_datasets=[v2], dataset_tags=["golden"], client=client)
    (src / "e.txt").write_bytes(b"e")
    v3.add_files(src)
    v3.finalize()
    task = client.create_task(name="reads-v2", project="tui")
    client.post(f"/datasets/{v2.id}/readers", {"task_id": task["id"]})
    return v1, v2, v3, task


def _node(tree: Tree[str], dataset_id: str) -> Any:
    stack = [tree.root]
    while stack:
        node = stack.pop()
        if node.data == dataset_id:
            return node
        stack.extend(node.children)
    return None


def _diff_rows(screen: DatasetsScreen) -> list[str]:
    table = screen.query_one("#datasets-diff", DataTable)
    return [str(key.value) for key in table.rows]


def test_lineage_tree_readers_and_diff_between_two_versions(client: Client, name: str,
                                                            tmp_path: Path) -> None:
    v1, v2, v3, task = _versions(client, name, tmp_path)
    app = make_app(client, view="datasets")

    async def scenario(app: Any, pilot: Any) -> None:
        screen = await until(pilot, lambda: isinstance(app.screen, DatasetsScreen) and app.screen,
                             message="datasets view")
        tree = screen.query_one(Tree)
        node = await until(pilot, lambda: _node(tree, v3.id), message="v3 in the tree")
        assert node.parent.data == v2.id and node.parent.parent.data == v1.id, "versions nest by parent"
        assert "golden" in str(node.label) and "+1 ~0 -0" in str(node.label)

        tree.move_cursor(_node(tree, v2.id))
        await until(pilot, lambda: _diff_rows(screen) == ["~a.txt", "-b.txt", "+d.txt"], message="v2 diff")
        readers = screen.query_one("#datasets-readers", DataTable)
        assert [str(k.value) for k in readers.rows] == [task["id"]], "the experiment that used v2"

        tree.move_cursor(_node(tree, v1.id))
        await pilot.press("m")                          # v1 is the diff base ...
        tree.move_cursor(_node(tree, v3.id))            # ... compared with v3
        await until(pilot, lambda: _diff_rows(screen) == ["~a.txt", "-b.txt", "+d.txt", "+e.txt"],
                    message="diff v1 -> v3")
        await pilot.press("c")
        await until(pilot, lambda: _diff_rows(screen) == ["+e.txt"], message="diff v3 vs its parent")

        tree.move_cursor(_node(tree, v2.id))
        await until(pilot, lambda: readers.row_count == 1, message="v2 readers")
        readers.focus()
        await pilot.press("enter")
        await until(pilot, lambda: type(app.screen).__name__ == "DetailScreen", message="experiment opened")

    drive(app, scenario)


def test_lineage_places_a_merge_under_each_parent() -> None:
    def version(vid: str, number: int, parents: list[str]) -> dict[str, Any]:
        return {"id": vid, "project_name": "p", "name": "d", "version": number, "parents": parents}

    tree = lineage([version("m", 3, ["a", "b"]), version("a", 1, []), version("b", 2, []),
                    version("x", 4, ["gone"])])
    assert [v["id"] for v in tree[""]] == ["a", "b", "x"], "a parent not listed makes its child a root"
    assert [v["id"] for v in tree["a"]] == ["m"] and [v["id"] for v in tree["b"]] == ["m"]
