"""Secrets: a corpus of secret shapes must never be stored in clear, wherever it appears."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from fleetdeck.client import Client
from fleetdeck.redact import REDACTED, is_secret_name, redact_argv, redact_mapping, redact_text, redact_value
from fleetdeck.server_lite.process import ServerProcess
from tests.sdk.conftest import write_script

# Fake secrets in the shapes real ones have (none of them is valid anywhere).
CORPUS = {
    "aws": "AKIAIOSFODNN7EXAMPLE",
    "github": "ghp_1a2B3c4D5e6F7g8H9i0JkLmNoPqRsTuVwXyZ",
    "github_pat": "github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyz",
    "huggingface": "hf_aBcDeFgHiJkLmNoPqRsTuVwXyZ01234567",
    "openai": "sk-proj-Ab12Cd34Ef56Gh78Ij90Kl12Mn34",
    "slack": "xoxb-123456789012-abcdefghijkl",
    "fleetdeck": "fd_Zz9yX8wV7uT6sR5qP4oN3mL2kJ1",
    "jwt": "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dBjftJeZ4CVPmB92K27uhbUJU1p1r_wW1gFWFOEjXk",
    "url_password": "postgres://trainer:hunter2pass@db.internal:5432/runs",
    "pem": "-----BEGIN RSA PRIVATE KEY-----\nMIIEpAIBAAKCAQEA0Z3VS5JJcds3xfn/ygWyF8PbnGy0AHB7MaGSB0S\n"
           "-----END RSA PRIVATE KEY-----",
}
"""Values that are secrets by their look alone."""

NAMED = {"db_password": "plain-words-1", "WANDB_API_KEY": "0123456789abcdef0123", "client_secret": "opensesame99",
         "private_key": "keymaterial42", "access_token": "tok-value-77", "credentials": "user:passphrase88"}
"""Values that are secrets only because their name says so."""

NEEDLES = [v for v in CORPUS.values()] + list(NAMED.values()) + ["hunter2pass", "MIIEpAIBAAKCAQEA0Z3VS5JJcds3xfn"]
"""Strings that must not appear anywhere in what the server stores."""


@pytest.mark.parametrize("kind", sorted(CORPUS))
def test_secret_values_are_redacted_in_text(kind: str) -> None:
    secret = CORPUS[kind]
    text = redact_text(f"connecting with {secret} now")
    assert secret not in text and REDACTED in text
    assert text.startswith("connecting with") and text.endswith("now")


def test_url_keeps_everything_but_the_password() -> None:
    assert redact_text(CORPUS["url_password"]) == f"postgres://trainer:{REDACTED}@db.internal:5432/runs"


@pytest.mark.parametrize("line", ["export DB_PASSWORD=plain-words-1", 'api_key: "plain-words-1"',
                                  "{'client_secret': 'plain-words-1'}", "--hf-token plain-words-1",
                                  "token=plain-words-1"])
def test_assignments_to_secret_names_are_redacted(line: str) -> None:
    assert "plain-words-1" not in redact_text(line)


@pytest.mark.parametrize("name", ["max_tokens", "tokenizer_name", "num_tokens", "author", "auth_url"])
def test_ordinary_names_are_not_secret(name: str) -> None:
    assert not is_secret_name(name)
    assert redact_value(name, 512) == 512


def test_ordinary_text_is_unchanged() -> None:
    line = "epoch 3 loss=0.1234 lr=3e-4 tokens/s=51234 url=https://example.com/a?b=c"
    assert redact_text(line) == line


def test_argv_and_env_redaction() -> None:
    argv = ["train.py", "--api-key", "plain-words-1", "--password=hunter3", "--lr", "0.1", CORPUS["github"]]
    assert redact_argv(argv) == ["train.py", "--api-key", REDACTED, f"--password={REDACTED}", "--lr", "0.1", REDACTED]
    env = redact_mapping({"HF_TOKEN": "abc", "PATH": "/usr/bin", "DATABASE_URL": CORPUS["url_password"]})
    assert env["HF_TOKEN"] == REDACTED and env["PATH"] == "/usr/bin" and "hunter2pass" not in env["DATABASE_URL"]


def test_nothing_from_the_corpus_reaches_the_server(tmp_path: Path, server_env: dict[str, str],
                                                    client: Client, server: ServerProcess) -> None:
    """Parameters, configuration, env vars, argv and console lines of a real run, read back whole.

    The run's own API token (in its environment) must not reach the server either: neither the API's
    answers nor any file of the server's data dir (but the admin-token file the server itself wrote).
    """
    script = write_script(tmp_path / "secrets", """
        import argparse, json, sys
        from fleetdeck import Task
        corpus = json.loads(sys.argv[-1])
        task = Task.init(project_name="secrets", task_name="corpus")
        parser = argparse.ArgumentParser()
        parser.add_argument("--api-key")
        parser.add_argument("--data")
        args, _ = parser.parse_known_args()
        task.connect(corpus["named"], name="named")
        task.connect({f"value_{k}": v for k, v in corpus["values"].items()}, name="values")
        task.connect_configuration({"db": corpus["values"]["url_password"], "pem": corpus["values"]["pem"]},
                                   name="cfg")
        for value in [*corpus["values"].values(), *corpus["named"].values()]:
            print("using", value)
        for name, value in corpus["named"].items():
            print(f"{name}={value}")
        task.get_logger().report_text("token: " + corpus["values"]["github"])
    """)
    corpus = json.dumps({"values": CORPUS, "named": NAMED})
    env = {**server_env, "MY_SERVICE_TOKEN": "plain-words-env", "HF_HUB_TOKEN": CORPUS["huggingface"]}
    proc = subprocess.run([sys.executable, str(script), "--api-key", NAMED["access_token"], "--data",
                           CORPUS["url_password"], corpus], env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    task_id = client.list_tasks(project=["secrets"])["items"][0]["id"]
    stored = json.dumps([client.get_task(task_id), client.get_console(task_id, limit=10_000),
                         client.get_events(task_id)])
    assert "using" in stored and REDACTED in stored
    api_token = server_env["FLEETDECK_API_TOKEN"]
    leaked = [needle for needle in [*NEEDLES, "plain-words-env", api_token] if needle in stored]
    assert leaked == []
    on_disk = [path for path in server.data_dir.rglob("*")
               if path.is_file() and path.name != "admin-token" and api_token.encode() in path.read_bytes()]
    assert on_disk == []
