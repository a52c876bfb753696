"""Docker mode against a real Docker engine and a locally built image (no registry)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from fleetdeck.client import Client
from fleetdeck.fleet.code import Checkout
from fleetdeck.fleet.executors.base import JobSpec
from fleetdeck.fleet.executors.docker import DockerSettings, container_options
from fleetdeck.server_lite.process import ServerProcess
from tests.fleet.conftest import AgentFactory, agent_log
from tests.support import wait_for

pytestmark = pytest.mark.docker

PROBE = textwrap.dedent("""\
    import os, re
    from fleetdeck.client import Client

    print("in container:", os.path.exists("/.dockerenv"), open("/etc/os-release").read().split("\\n")[0])
    task = Client().get_task(os.environ["FLEETDECK_TASK_ID"])
    print("my task:", task["name"])
    found = set()
    token = re.compile(r"fd_[A-Za-z0-9_-]{20,}")
    found.update(token.findall("\\n".join(os.environ.values())))
    for root in ("/work", "/tmp", "/root", "/home", "/etc", "/run", "/var", "/opt/fleetdeck/etc"):
        for folder, _, files in os.walk(root):
            for name in files:
                try:
                    with open(os.path.join(folder, name), "rb") as fh:
                        found.update(token.findall(fh.read(1_000_000).decode("latin-1")))
                except OSError:
                    pass
    print("tokens seen:", " ".join(sorted(found)))
    print("docker socket:", os.path.exists("/var/run/docker.sock"))
""")


def _console(client: Client, task_id: str) -> str:
    return "\n".join(item["line"] for item in client.get_console(task_id, limit=10_000)["items"])


def _task(client: Client, name: str, code: str) -> str:
    task = client.create_task(name=name, project="docker", script={"entry_point": f"{name}.py", "code": code})
    client.enqueue(task["id"], "default")
    return str(task["id"])


def test_task_runs_in_container_with_only_its_scoped_token(
        client: Client, start_agent: AgentFactory, job_image: str, agent_token: str, docker_client: object,
        tmp_path: Path) -> None:
    probe = _task(client, "probe", PROBE)
    start_agent("docker1", "--docker", job_image, "--cpu-only", "--memory", "512m", "--cpus", "1")
    done = wait_for(lambda: (t := client.get_task(probe))["status"] in ("completed", "failed") and not t["lease"]
                    and t, timeout=90, message="the container task")
    console = _console(client, probe)
    assert done["status"] == "completed", console + agent_log(tmp_path, "docker1")
    assert "in container: True PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"" in console
    assert "my task: probe" in console
    seen = console.split("tokens seen:")[1].splitlines()[0].split()
    assert len(seen) == 1 and seen[0] != agent_token, "the container sees its task token and nothing else"
    assert agent_token not in console
    assert "docker socket: False" in console
    assert done["runtime"]["agent"]["phases"].keys() >= {"cloning", "pulling", "starting", "running", "uploading"}
    assert not docker_client.api.containers(all=True, filters={"label": f"fleetdeck.task={probe}"})  # type: ignore[attr-defined]


def test_task_init_in_the_container_applies_overrides(
        client: Client, start_agent: AgentFactory, job_image: str, tmp_path: Path) -> None:
    code = textwrap.dedent("""\
        import argparse
        from fleetdeck import Task

        parser = argparse.ArgumentParser()
        parser.add_argument("--lr", type=float, default=0.1)
        task = Task.init(project_name="docker", task_name="train")
        args = parser.parse_args()
        print(f"container lr={args.lr}")
        """)
    task = client.create_task(name="train", project="docker", script={"entry_point": "train.py", "code": code},
                              hyperparams={"Args": {"lr": {"value": 0.05, "type": "float"}}})
    client.enqueue(task["id"], "default")
    start_agent("docker3", "--docker", job_image)
    done = wait_for(lambda: (t := client.get_task(task["id"]))["status"] in ("completed", "failed") and not t["lease"]
                    and t, timeout=90, message="the container task")
    assert done["status"] == "completed", _console(client, task["id"]) + agent_log(tmp_path, "docker3")
    assert "container lr=0.05" in _console(client, task["id"])


def test_abort_removes_the_container(client: Client, start_agent: AgentFactory, job_image: str,
                                     docker_client: object) -> None:
    looping = _task(client, "looping", "import time\nwhile True:\n    print('tick', flush=True)\n    time.sleep(0.2)\n")
    start_agent("docker2", "--docker", job_image)
    wait_for(lambda: "tick" in _console(client, looping), timeout=90, message="the container to print")
    label = {"label": f"fleetdeck.task={looping}"}
    api = docker_client.api  # type: ignore[attr-defined]  # the low-level list does not race with removal
    assert api.containers(filters=label)
    aborted = time.monotonic()
    client.set_status(looping, "aborted", "test")
    wait_for(lambda: not api.containers(all=True, filters=label), timeout=10, message="the container to be removed")
    assert time.monotonic() - aborted < 10
    assert client.get_task(looping)["status"] == "aborted"


def test_absent_or_oversized_image_is_one_clear_error(server: ServerProcess, agent_token: str, job_image: str) -> None:
    env = {**os.environ, "FLEETDECK_SERVER_URL": server.url, "FLEETDECK_API_TOKEN": agent_token}
    base = [sys.executable, "-m", "fleetdeck.app", "agent", "--queue", "default"]
    absent = subprocess.run([*base, "--docker", "fleetdeck-no-such-image:1"], capture_output=True, text=True,
                            env=env, timeout=60)
    assert absent.returncode == 2
    assert absent.stderr.strip().splitlines()[-1] == ("error: docker image 'fleetdeck-no-such-image:1' is not on "
                                                      "this host and no registry is configured; build or load it first")
    big = subprocess.run([*base, "--docker", job_image, "--max-image-size", "10m"], capture_output=True, text=True,
                         env=env, timeout=60)
    assert big.returncode == 2 and "over the 0.0 GiB limit; refused" in big.stderr and "Traceback" not in big.stderr


def test_container_options_are_locked_down_whatever_the_task_asks(tmp_path: Path) -> None:
    checkout = Checkout(root=tmp_path, cwd=tmp_path / "sub", entry_point="train.py")
    task = {"id": "a" * 32, "runtime": {"docker_args": "--privileged -v /:/host"}}
    spec = JobSpec(task=task, checkout=checkout, env={"FLEETDECK_API_TOKEN": "fd_task"}, gpus=["0", "2"])
    options = container_options(DockerSettings(image="img", memory="1g", cpus=1.5), spec, str(tmp_path), "n")
    assert options["network_mode"] == "host" and options["privileged"] is False
    assert options["cap_drop"] == ["ALL"] and options["security_opt"] == ["no-new-privileges"]
    assert options["volumes"] == {str(tmp_path): {"bind": "/work", "mode": "rw"}}
    assert options["working_dir"] == "/work/sub" and options["mem_limit"] == "1g"
    assert options["nano_cpus"] == 1_500_000_000
    assert options["device_requests"][0]["DeviceIDs"] == ["0", "2"]
    assert set(options["environment"]) == {"PYTHONUNBUFFERED", "HOME", "FLEETDECK_API_TOKEN", "NVIDIA_VISIBLE_DEVICES"}
    cpu = container_options(DockerSettings(image="img"), JobSpec(task=task, checkout=checkout, env={}, gpus=[]),
                            str(tmp_path), "n")
    assert "device_requests" not in cpu and cpu["environment"]["NVIDIA_VISIBLE_DEVICES"] == "void"
