"""``Task.init`` end to end: real scripts in real git repositories, a real server, read back via the API."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from fleetdeck import Task
from fleetdeck.client import Client
from fleetdeck.errors import FleetdeckError
from fleetdeck.server_lite.process import ServerProcess
from tests.sdk.conftest import write_script
from tests.support import wait_for

HAS_TORCH = importlib.util.find_spec("torch") is not None
HAS_MPL = importlib.util.find_spec("matplotlib") is not None
HAS_TBX = importlib.util.find_spec("tensorboardX") is not None

FULL_SCRIPT = """
import argparse, sys
import numpy as np
from fleetdeck import Task

task = Task.init(project_name="capture", task_name="full")
parser = argparse.ArgumentParser()
parser.add_argument("--lr", type=float, default=0.01)
parser.add_argument("--epochs", type=int, default=3)
parser.add_argument("--arch", default="resnet18")
parser.add_argument("--amp", action="store_true")
args = parser.parse_args()
train_cfg = task.connect({"batch_size": 64, "optim": {"momentum": 0.9}}, name="train")
task.connect_configuration({"layers": [64, 128]}, name="model")
logger = task.get_logger()
for epoch in range(args.epochs):
    logger.report_scalar("loss", "train", 1.0 / (epoch + 1), epoch)
    print(f"epoch {epoch} done")
for pct in (10, 50, 100):
    print(f"\\rprogress {pct}%", end="")
print()
print("a warning on stderr", file=sys.stderr)
logger.report_text("hello text")
logger.report_single_value("accuracy", 0.93)
logger.report_table("summary", "per class", 0, table_plot=[["class", "acc"], ["cat", 0.9]])
logger.report_plotly("roc", "val", {"data": [{"x": [0, 1], "y": [0, 1]}]}, 0)
logger.report_image("samples", "batch0", 0, image=np.zeros((4, 4, 3), dtype=np.uint8))
task.upload_artifact("stats", {"acc": 0.93})
task.upload_artifact("embedding", np.arange(10, dtype=np.float32))
import os
os.makedirs("run-config/nested", exist_ok=True)
open("run-config/nested/a.yaml", "w").write("a: 1\\n")
task.upload_artifact("config_dir", "run-config")
task.upload_artifact("label_set", {"cat", "dog"})

class Augment:
    flip = True
    scale = 1.5

task.connect(Augment, name="augment")
assert Task.current_task() is task
try:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    plt.plot([1, 2, 3])
    plt.savefig("curve.png")
    plt.show()
except ImportError:
    pass
try:
    import tensorboardX
    writer = tensorboardX.SummaryWriter("tb-logs")
    writer.add_scalar("tb/acc", 0.5, 1)
    writer.close()
except ImportError:
    pass
try:
    import torch
    torch.save({"w": torch.zeros(2)}, "model.pt")
except ImportError:
    pass
print("done")
"""


def make_repo(folder: Path) -> None:
    """A real git repository with an origin URL that carries credentials."""
    folder.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.com"}

    def git(*args: str) -> None:
        subprocess.run(["git", *args], cwd=folder, check=True, capture_output=True, env=env)

    git("init", "-q", "-b", "main")
    git("remote", "add", "origin", "https://alice:s3cretpass@git.example.com/team/vision.git")
    (folder / "README.md").write_text("vision\n")
    (folder / ".gitignore").write_text("tb-logs/\n*.png\n*.pt\n")
    git("add", ".")
    git("commit", "-q", "-m", "init")


def test_full_capture_is_readable_through_the_api(tmp_path: Path, server_env: dict[str, str],
                                                   client: Client, run_script) -> None:
    repo = tmp_path / "repo"
    make_repo(repo)
    script = write_script(repo, FULL_SCRIPT)
    subprocess.run(["git", "add", "train.py"], cwd=repo, check=True)
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@e", "commit", "-q", "-m", "script"],
                   cwd=repo, check=True)
    (repo / "README.md").write_text("vision\nuncommitted change\n")
    (repo / "notes.txt").write_text("untracked\n")

    result = run_script(script, "--lr", "0.5", "--amp", env=server_env)
    assert result.returncode == 0, result.stderr
    assert "epoch 2 done" in result.stdout  # the user still sees the console

    handle = Task.get_task(project_name="capture", task_name="full")
    task = wait_for(lambda: (t := client.get_task(handle.id))["status"] == "completed" and t, timeout=30,
                    message="task completed")
    # code
    script_info = task["script"]
    assert script_info["repository"] == "https://git.example.com/team/vision.git"
    assert script_info["branch"] == "main"
    assert len(script_info["commit"]) == 40
    assert "+uncommitted change" in script_info["diff"]
    assert "notes.txt" in script_info["untracked"]
    assert script_info["entry_point"] == "train.py"
    assert script_info["working_dir"] == "."
    # environment
    env = task["environment"]
    assert env["python"] == ".".join(map(str, sys.version_info[:3]))
    assert env["executable"] == sys.executable
    assert env["os"] and env["host"]
    assert "numpy" in {name.lower() for name in env["packages"]}
    assert any(item.startswith("numpy==") for item in env["imported"])
    assert env["gpus"] == [] and task["runtime"]["gpus"] == []  # no GPU on this machine, and no error
    # parameters, typed and by section
    params = task["hyperparams"]
    assert params["Args"]["lr"]["value"] == 0.5 and params["Args"]["lr"]["type"] == "float"
    assert params["Args"]["epochs"]["value"] == 3 and params["Args"]["epochs"]["type"] == "int"
    assert params["Args"]["amp"]["value"] is True and params["Args"]["arch"]["value"] == "resnet18"
    assert params["train"]["optim.momentum"]["value"] == 0.9
    assert json.loads(task["configuration"]["model"]["value"]) == {"layers": [64, 128]}
    assert handle.get_parameters()["Args/lr"] == 0.5
    # console: lines, streams, progress bar coalesced
    lines = handle.get_reported_console_output()
    assert lines.count("epoch 0 done") == 1 and "done" in lines
    assert "progress 100%" in lines and not any("progress 10%" in line for line in lines)
    console = client.get_console(handle.id)["items"]
    assert {"a warning on stderr"} <= {c["line"] for c in console if c["stream"] == "stderr"}
    # scalars (explicit and TensorBoard) and resource series
    scalars = handle.get_reported_scalars()
    assert scalars["loss"]["train"]["y"] == [1.0, 0.5, 1 / 3]
    if HAS_TBX:
        assert scalars["tb"]["acc"]["y"] == [0.5]
    assert "cpu.percent" in scalars[":monitor:"] and "process.rss_mb" in scalars[":monitor:"]
    # other events
    kinds = [e["kind"] for e in client.get_events(handle.id)]
    for kind in ("text", "single_value", "table", "plot", "image"):
        assert kind in kinds, kind
    images = client.get_events(handle.id, kind="image")
    assert all(len(e["sha256"]) == 64 for e in images)
    if HAS_MPL:
        assert sum(e["metric"] == "matplotlib" for e in images) == 2  # saved and shown
    # artifacts and models
    artifacts = handle.artifacts
    assert artifacts["stats"].get() == {"acc": 0.93}
    assert artifacts["embedding"].get().tolist() == list(range(10))
    folder = Path(artifacts["config_dir"].get_local_copy())
    assert (folder / "nested" / "a.yaml").read_text() == "a: 1\n"
    with pytest.raises(FleetdeckError, match="allow_pickle=True"):
        artifacts["label_set"].get()
    assert artifacts["label_set"].get(allow_pickle=True) == {"cat", "dog"}
    assert params["augment"]["flip"]["value"] is True and params["augment"]["scale"]["type"] == "float"
    local = artifacts["stats"].get_local_copy()
    assert hashlib.sha256(Path(local).read_bytes()).hexdigest() == artifacts["stats"].sha256
    if HAS_TORCH:
        model = artifacts["model.pt"]
        assert model.kind == "model"
        assert model.sha256 == hashlib.sha256((repo / "model.pt").read_bytes()).hexdigest()
    assert task["runtime"]["exit_code"] == 0
    assert task["runtime"]["argv"][0].endswith("train.py") and task["runtime"]["argv"][1:] == ["--lr", "0.5", "--amp"]


def test_script_outside_a_repository_stores_its_code(tmp_path: Path, server_env: dict[str, str],
                                                      client: Client, run_script) -> None:
    script = write_script(tmp_path / "plain", """
        from fleetdeck import Task
        Task.init(project_name="p", task_name="plain")
        print("ok")
    """)
    assert run_script(script, env=server_env).returncode == 0
    task = client.get_task(Task.get_task(project_name="p", task_name="plain").id)
    assert 'Task.init(project_name="p", task_name="plain")' in task["script"]["code"]
    assert not task["script"].get("repository")


def test_a_second_run_never_overwrites_the_first(tmp_path: Path, server_env: dict[str, str],
                                                 client: Client, run_script) -> None:
    script = write_script(tmp_path / "again", """
        from fleetdeck import Task
        task = Task.init(project_name="p", task_name="same name")
        task.get_logger().report_scalar("m", "v", 1.0, 0)
    """)
    for _ in range(2):
        assert run_script(script, env=server_env).returncode == 0
    runs = Task.get_tasks(project_name="p", task_name="same name")
    assert len(runs) == 2
    for run in runs:
        assert wait_for(lambda: client.list_series(run.id), message="series")[0]["count"] == 1


def test_uncaught_exception_fails_the_task_with_its_traceback(tmp_path: Path, server_env: dict[str, str],
                                                              client: Client, run_script) -> None:
    script = write_script(tmp_path / "boom", """
        from fleetdeck import Task
        Task.init(project_name="p", task_name="boom")
        def step():
            raise RuntimeError("loss is NaN")
        step()
    """)
    result = run_script(script, env=server_env)
    assert result.returncode == 1 and "RuntimeError: loss is NaN" in result.stderr
    task = client.get_task(Task.get_task(project_name="p", task_name="boom").id)
    assert task["status"] == "failed"
    assert "RuntimeError: loss is NaN" in task["status_reason"] and 'line 4, in step' in task["status_reason"]
    assert task["runtime"]["exit_code"] == 1
    console = [c["line"] for c in client.get_console(task["id"])["items"]]
    assert "RuntimeError: loss is NaN" in console  # the traceback is in the log as well


def test_exit_code_is_recorded_and_kept(tmp_path: Path, server_env: dict[str, str], client: Client,
                                        run_script) -> None:
    script = write_script(tmp_path / "exit", """
        import sys
        from fleetdeck import Task
        Task.init(project_name="p", task_name="exit3")
        sys.exit(3)
    """)
    assert run_script(script, env=server_env).returncode == 3
    task = client.get_task(Task.get_task(project_name="p", task_name="exit3").id)
    assert task["status"] == "failed" and task["runtime"]["exit_code"] == 3


def test_killed_process_fails_its_task(tmp_path: Path, server_env: dict[str, str], client: Client) -> None:
    script = write_script(tmp_path / "killed", """
        import os, signal
        from fleetdeck import Task
        task = Task.init(project_name="p", task_name="killed")
        task.get_logger().report_scalar("m", "v", 1.0, 0)
        task.flush(wait_for_uploads=True)
        os.kill(os.getpid(), signal.SIGKILL)
    """)
    proc = subprocess.run([sys.executable, str(script)], env=server_env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == -signal.SIGKILL
    task = client.get_task(Task.get_task(project_name="p", task_name="killed").id)
    assert task["status"] == "failed" and "without closing" in task["status_reason"]
    assert client.list_series(task["id"])[0]["count"] == 1


def test_rank_one_of_two_creates_no_task(tmp_path: Path, server_env: dict[str, str], client: Client,
                                         spool_dir: Path) -> None:
    script = write_script(tmp_path / "ddp", """
        import os
        from fleetdeck import Task
        task = Task.init(project_name="ddp", task_name="run")
        task.get_logger().report_scalar("loss", "rank" + os.environ["RANK"], 1.0, 0)
        task.connect({"lr": 0.1})
        task.upload_artifact("a", {"x": 1})
        print("rank", os.environ["RANK"], "id", repr(task.id))
        task.close()
    """)
    procs = [subprocess.Popen([sys.executable, str(script)], env={**server_env, "RANK": str(rank), "WORLD_SIZE": "2"},
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for rank in (0, 1)]
    outputs = [p.communicate(timeout=60) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    assert "rank 1 id ''" in outputs[1][0]
    tasks = Task.get_tasks(project_name="ddp")
    assert len(tasks) == 1
    assert [s["variant"] for s in client.list_series(tasks[0].id) if s["metric"] == "loss"] == ["rank0"]


def test_agent_attach_applies_stored_parameters(tmp_path: Path, server_env: dict[str, str], client: Client,
                                                run_script) -> None:
    """The agent contract: FLEETDECK_TASK_ID attaches, stored values override argparse and connect()."""
    stored = client.create_task(name="edited clone", project="agent", hyperparams={
        "Args": {"lr": {"value": "0.5", "type": "float"}, "epochs": {"value": 3, "type": "int"}},
        "General": {"batch": {"value": 256, "type": "int"}}})
    client.enqueue(stored["id"], "gpu")
    client.dequeue(["gpu"], worker="w1")
    script = write_script(tmp_path / "agent", """
        import argparse
        from fleetdeck import Task
        task = Task.init(project_name="ignored", task_name="ignored")
        parser = argparse.ArgumentParser()
        parser.add_argument("--lr", type=float, default=0.1)
        parser.add_argument("--epochs", type=int, default=3)
        args = parser.parse_args()
        cfg = task.connect({"batch": 32, "seed": 1})
        print("lr", args.lr, "batch", cfg["batch"], "id", task.id)
    """)
    result = run_script(script, env={**server_env, "FLEETDECK_TASK_ID": stored["id"]})
    assert result.returncode == 0, result.stderr
    assert f"lr 0.5 batch 256 id {stored['id']}" in result.stdout
    task = client.get_task(stored["id"])
    assert task["status"] == "completed"
    assert sorted(task["runtime"]["overrides"]) == ["Args/lr", "General/batch"]
    assert task["hyperparams"]["Args"]["lr"]["value"] == 0.5
    assert task["hyperparams"]["General"]["seed"]["value"] == 1
    assert len(client.list_tasks()["items"]) == 1  # attached, nothing new created


def test_execute_remotely_enqueues_and_exits(tmp_path: Path, server_env: dict[str, str], client: Client,
                                             run_script) -> None:
    script = write_script(tmp_path / "remote", """
        from fleetdeck import Task
        task = Task.init(project_name="p", task_name="remote")
        task.connect({"lr": 0.1})
        task.execute_remotely(queue_name="gpu")
        print("this line runs only on the agent")
    """)
    result = run_script(script, env=server_env)
    assert result.returncode == 0, result.stderr
    assert "runs only on the agent" not in result.stdout
    task = client.get_task(Task.get_task(project_name="p", task_name="remote").id)
    assert task["status"] == "queued" and task["hyperparams"]["General"]["lr"]["value"] == 0.1
    assert [q["name"] for q in client.list_queues()] == ["gpu"]


def test_clone_set_parameters_and_enqueue(server: ServerProcess, client: Client, monkeypatch) -> None:
    monkeypatch.setenv("FLEETDECK_SERVER_URL", server.url)
    monkeypatch.setenv("FLEETDECK_API_TOKEN", server.admin_token)
    source = client.create_task(name="base", project="p", hyperparams={"Args": {"lr": {"value": 0.1, "type": "float"}}},
                                script={"repository": "https://x/y.git", "entry_point": "train.py"})
    clone = Task.clone(source["id"], name="base lr=0.2")
    clone.set_parameters({"Args/lr": 0.2, "note": "sweep"})
    stored = client.get_task(clone.id)
    assert stored["parent"] == source["id"] and stored["status"] == "created"
    assert stored["script"]["entry_point"] == "train.py"
    assert clone.get_parameters() == {"Args/lr": 0.2, "General/note": "sweep"}
    Task.enqueue(clone, queue_name="cpu")
    assert client.get_task(clone.id)["status"] == "queued"
    assert client.get_task(source["id"])["hyperparams"]["Args"]["lr"]["value"] == 0.1


def test_import_and_init_pay_for_no_http_or_git(tmp_path: Path, sdk_env: dict[str, str]) -> None:
    """The training process never imports httpx or git: the helper does that work."""
    script = write_script(tmp_path / "light", """
        import sys
        from fleetdeck import Task
        task = Task.init(project_name="p", task_name="light")
        task.get_logger().report_scalar("m", "v", 1.0, 0)
        heavy = sorted(m for m in ("httpx", "git", "psutil", "pynvml", "fastapi") if m in sys.modules)
        print("heavy:", heavy)
    """)
    env = {**sdk_env, "FLEETDECK_SERVER_URL": "http://127.0.0.1:9", "FLEETDECK_FLUSH_DEADLINE_S": "0"}
    out = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and "heavy: []" in out.stdout, out.stderr


def test_broken_spool_never_hurts_the_script(tmp_path: Path, sdk_env: dict[str, str]) -> None:
    script = write_script(tmp_path / "nospool", """
        import shutil
        from fleetdeck import Task
        task = Task.init(project_name="p", task_name="nospool")
        task.flush()
        shutil.rmtree(task._run.folder)
        for i in range(1000):
            task.get_logger().report_scalar("m", "v", float(i), i)
        task.flush()
        print("training finished")
    """)
    env = {**sdk_env, "FLEETDECK_SERVER_URL": "http://127.0.0.1:9", "FLEETDECK_FLUSH_DEADLINE_S": "0"}
    out = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and "training finished" in out.stdout
    warnings = [line for line in out.stderr.splitlines() if "cannot write the spool" in line]
    assert len(warnings) == 1, out.stderr
    assert "Traceback" not in out.stderr


def test_unwritable_spool_runs_the_script_untracked(tmp_path: Path, sdk_env: dict[str, str]) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    script = write_script(tmp_path / "nospool2", """
        from fleetdeck import Task
        task = Task.init(project_name="p", task_name="untracked")
        task.get_logger().report_scalar("m", "v", 1.0, 0)
        task.connect({"lr": 0.1})
        print("trained")
    """)
    env = {**sdk_env, "FLEETDECK_SPOOL_DIR": str(blocker / "spool")}
    out = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and "trained" in out.stdout
    assert "this run is NOT tracked" in out.stderr and "Traceback" not in out.stderr


@pytest.mark.parametrize(("project", "name"), [("", "x"), ("p", "n" * 201), ("p", 42)])
def test_bad_names_are_refused_before_anything_starts(project, name) -> None:
    with pytest.raises(FleetdeckError, match="must be a string of 1 to 200 characters"):
        Task.init(project_name=project, task_name=name)
    assert Task.current_task() is None
