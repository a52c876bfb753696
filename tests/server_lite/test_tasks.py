"""Task listing over HTTP: every filter, sorts (metric sort included), and paging by token."""

from __future__ import annotations

import random
from typing import Any

import pytest

from fleetdeck.client import Client
from fleetdeck.errors import RequestRejected
from fleetdeck.server_lite.process import ServerProcess

N = 60


@pytest.fixture(scope="module")
def populated(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """One server with N varied tasks, shared by the read-only tests of this module."""
    home = tmp_path_factory.mktemp("listing-home")
    server = ServerProcess(home / "data", env={"XDG_CONFIG_HOME": str(home / "config")}).start()
    rng = random.Random(6)
    tasks: list[dict[str, Any]] = []
    with Client(url=server.url, token=server.admin_token) as admin:
        users = {name: admin.create_token(name, "user")["token"] for name in ("ana", "ben")}
        clients = {name: Client(url=server.url, token=token) for name, token in users.items()}
        for i in range(N):
            user = "ana" if i % 3 else "ben"
            tags = [t for t in ("sweep", "baseline", "gpu") if rng.random() < 0.4]
            task = clients[user].create_task(name=f"{'ResNet' if i % 2 else 'vit'}-run-{i:02d}",
                                             project=["vision", "nlp", "vision/det"][i % 3], tags=tags)
            status = ["created", "in_progress", "completed", "failed"][i % 4]
            if status != "created":
                admin.set_status(task["id"], "in_progress")
            if status in ("completed", "failed"):
                admin.set_status(task["id"], status)
            loss = None
            if i % 5:
                loss = round(rng.uniform(0.1, 2.0), 4)
                admin.post_events(task["id"], {"scalars": [
                    {"metric": "loss", "variant": "val", "iterations": [0, 1], "values": [9.0, loss]}]})
            tasks.append({**task, "status": status, "user": user, "loss": loss, "tags": tags})
        for c in clients.values():
            c.close()
    client = Client(url=server.url, token=server.admin_token)
    yield client, tasks
    client.close()
    server.stop()


def listed(client: Client, **filters: Any) -> list[str]:
    return [t["id"] for t in client.iter_tasks(**filters)]


def newest_first(tasks: list[dict[str, Any]]) -> list[str]:
    return [t["id"] for t in sorted(tasks, key=lambda t: t["created"], reverse=True)]


@pytest.mark.parametrize(("filters", "keep"), [
    ({"project": "vision"}, lambda t: t["project_name"] == "vision"),
    ({"project": ["nlp", "vision/det"]}, lambda t: t["project_name"] in ("nlp", "vision/det")),
    ({"status": "failed"}, lambda t: t["status"] == "failed"),
    ({"status": ["completed", "in_progress"]}, lambda t: t["status"] in ("completed", "in_progress")),
    ({"tag": "sweep"}, lambda t: "sweep" in t["tags"]),
    ({"tag": ["sweep", "gpu"]}, lambda t: {"sweep", "gpu"} <= set(t["tags"])),
    ({"user": "ben"}, lambda t: t["user"] == "ben"),
    ({"name": "resnet"}, lambda t: "resnet" in t["name"].lower()),
    ({"name": "RUN-1"}, lambda t: "run-1" in t["name"].lower()),
    ({"metric": "loss/val", "metric_op": "lt", "metric_value": 1.0},
     lambda t: t["loss"] is not None and t["loss"] < 1.0),
    ({"metric": "loss/val", "metric_op": "ge", "metric_value": 1.5},
     lambda t: t["loss"] is not None and t["loss"] >= 1.5),
    ({"project": "vision", "status": "in_progress", "user": "ana"},
     lambda t: t["project_name"] == "vision" and t["status"] == "in_progress" and t["user"] == "ana"),
    ({"project": "no-such-project"}, lambda t: False),
])
def test_filters(populated: Any, filters: dict[str, Any], keep: Any) -> None:
    client, tasks = populated
    expected = newest_first([t for t in tasks if keep(t)])
    assert listed(client, **filters, page_size=500) == expected


def test_created_range(populated: Any) -> None:
    client, tasks = populated
    lo, hi = tasks[10]["created"], tasks[20]["created"]
    assert listed(client, created_after=lo, created_before=hi) == newest_first(tasks[10:20])


@pytest.mark.parametrize("order_by", ["name", "-name", "created", "status", "-user"])
def test_sort_by_field(populated: Any, order_by: str) -> None:
    client, tasks = populated
    field = order_by.lstrip("-")
    got = [t[field] for t in client.iter_tasks(order_by=order_by, page_size=500)]
    assert got == sorted(got, reverse=order_by.startswith("-")) and len(got) == N


def test_sort_by_metric_puts_missing_values_first_ascending(populated: Any) -> None:
    client, tasks = populated
    by_id = {t["id"]: t for t in tasks}
    ascending = [by_id[i]["loss"] for i in listed(client, order_by="metric:loss/val")]
    without = sum(1 for t in tasks if t["loss"] is None)
    assert ascending[:without] == [None] * without
    assert ascending[without:] == sorted(t["loss"] for t in tasks if t["loss"] is not None)
    descending = [by_id[i]["loss"] for i in listed(client, order_by="-metric:loss/val")]
    assert descending[: N - without] == sorted((t["loss"] for t in tasks if t["loss"] is not None), reverse=True)


@pytest.mark.parametrize("order_by", ["-created", "created", "name", "-metric:loss/val"])
def test_paging_has_no_duplicates_or_gaps(populated: Any, order_by: str) -> None:
    client, _ = populated
    whole = client.list_tasks(order_by=order_by, page_size=500)
    assert whole["next_page"] is None
    pages, token = [], None
    while True:
        page = client.list_tasks(order_by=order_by, page_size=7, page_token=token)
        pages.append([t["id"] for t in page["items"]])
        token = page["next_page"]
        if token is None:
            break
    assert len(pages) == -(-N // 7)
    assert [i for p in pages for i in p] == [t["id"] for t in whole["items"]]


def test_created_paging_stays_exact_while_tasks_are_added(server: ServerProcess, client: Client) -> None:
    first = [client.create_task(name=f"t{i}", project="live")["id"] for i in range(25)]
    seen: list[str] = []
    token = None
    while True:
        page = client.list_tasks(project="live", page_size=10, page_token=token)
        seen += [t["id"] for t in page["items"]]
        client.create_task(name="newcomer", project="live")  # lands before the pages already read
        token = page["next_page"]
        if token is None:
            break
    assert seen[:25] == first[::-1] and len(seen) == len(set(seen)) == 25


def test_page_tokens_are_bound_to_their_query(populated: Any) -> None:
    client, _ = populated
    token = client.list_tasks(project="vision", page_size=2)["next_page"]
    assert token
    with pytest.raises(RequestRejected, match="400.*belongs to a different query"):
        client.list_tasks(project="nlp", page_size=2, page_token=token)
    with pytest.raises(RequestRejected, match="400.*belongs to a different query"):
        client.list_tasks(project="vision", order_by="name", page_size=2, page_token=token)
    for forged in ("garbage", "e30", token[:-3] + "AAA"):
        with pytest.raises(RequestRejected, match="400.*page_token"):
            client.list_tasks(project="vision", page_size=2, page_token=forged)


@pytest.mark.parametrize(("filters", "message"), [
    ({"order_by": "password"}, "order_by must be one of"),
    ({"metric": "loss", "metric_op": "lt", "metric_value": 1}, "must be TITLE/SERIES"),
    ({"metric": "loss/val", "metric_op": "eq", "metric_value": 1}, "metric_op must be one of"),
    ({"metric": "loss/val"}, "needs metric"),
    ({"page_size": 0}, "page_size"),
])
def test_bad_listing_parameters_are_400s_naming_the_problem(populated: Any, filters: dict[str, Any],
                                                           message: str) -> None:
    client, _ = populated
    with pytest.raises(RequestRejected, match=message):
        client.list_tasks(**filters)


def test_listing_leaves_heavy_fields_out(client: Client) -> None:
    task = client.create_task(name="heavy", project="p", script={"diff": "d" * 50_000, "repository": "r"},
                              environment={"packages": {f"pkg{i}": "1.0" for i in range(500)}})
    row = client.list_tasks(project="p")["items"][0]
    assert row["id"] == task["id"] and "hyperparams" not in row and "script" not in row
    full = client.get_task(task["id"])
    assert len(full["script"]["diff"]) == 50_000 and len(full["environment"]["packages"]) == 500


def test_bulk_create_is_validated_and_all_or_nothing(server: ServerProcess, client: Client) -> None:
    made = client.post("/tasks/bulk", {"tasks": [
        {"name": f"b{i}", "project": "bulk", "tags": ["x"], "script": {"diff": f"diff {i}"}} for i in range(300)]})
    assert len(made["ids"]) == 300
    assert listed(client, project="bulk", order_by="created") == made["ids"]
    assert client.get_task(made["ids"][7])["script"]["diff"] == "diff 7"
    with pytest.raises(RequestRejected, match=r"422.*tasks\.1\.name"):
        client.post("/tasks/bulk", {"tasks": [{"name": "ok", "project": "bulk"}, {"name": "", "project": "bulk"}]})
    with pytest.raises(RequestRejected, match="422"):
        client.post("/tasks/bulk", {"tasks": [{"name": "x", "project": "bulk"}] * 1001})
    assert len(listed(client, project="bulk")) == 300, "a refused bulk request stores nothing"
