"""``Task``: one experiment run, tracked from the training script that calls :meth:`Task.init`.

What ``Task.init`` does on the caller's thread is local and cheap: it opens a spool folder for the
run, starts one flusher thread (:mod:`fleetdeck._buffer`), tees the console, hooks argparse and
the frameworks the script imports, and spawns the helper process (``python -m
fleetdeck._reporter``, never ``fork``) that owns every network call, git inspection, package
listing and resource sampling. Nothing waits for the server: if it is slow or down the run keeps
going and the spool keeps the records until the helper (or ``fleetdeck sync``) uploads them.

A ``Task`` obtained with :meth:`get_task`, :meth:`get_tasks` or :meth:`clone` is a handle on a
stored task; its methods talk to the server through :class:`fleetdeck.client.Client`.
Names follow ClearML's SDK so a ClearML script switches by changing its import.
"""

from __future__ import annotations

import atexit
import json
import os
import sys
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fleetdeck import _capture_args as args_capture
from fleetdeck._buffer import EventBuffer
from fleetdeck._capture_console import ConsoleTee
from fleetdeck.errors import FleetdeckError
from fleetdeck.logger import Logger
from fleetdeck.spool import new_run_key, read_state, spool_root

if TYPE_CHECKING:  # pragma: no cover
    from fleetdeck.artifacts import Artifact
    from fleetdeck.client import Client

DEFAULT_FLUSH_DEADLINE_S = 10.0
_CLONED_FIELDS = {
    "script": {"repository", "branch", "commit", "entry_point", "working_dir", "binary", "diff", "code",
               "requirements", "untracked"},
    "environment": {"python", "executable", "os", "host", "packages", "imported", "gpus", "cuda", "driver"},
}
"""Fields a clone copies (the server adds read-only summaries such as ``has_diff`` to what it returns)."""


def clone_fields(source: dict[str, Any]) -> dict[str, Any]:
    """What a clone of the stored task ``source`` copies: parameters, configuration, code, environment.

    Results (status, metrics, runtime, artifacts) stay with the source. The SDK's :meth:`Task.clone`
    and the ``fleetdeck tasks clone`` command both copy exactly this.
    """
    fields = {key: source[key] for key in ("type", "tags", "hyperparams", "configuration")
              if source.get(key) is not None}
    for key, allowed in _CLONED_FIELDS.items():
        if source.get(key):
            fields[key] = {k: v for k, v in source[key].items() if k in allowed}
    return fields

_offline_override: bool | None = None


def _env_float(name: str, default: float) -> float:
    raw = os.environ.get(name)
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise FleetdeckError(f"{name} must be a number of seconds, got {raw!r}") from None
    if value < 0:
        raise FleetdeckError(f"{name} must not be negative, got {value}")
    return value


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


def _rank() -> int:
    """This process's rank in a distributed run (0 when not distributed)."""
    for var in ("RANK", "LOCAL_RANK", "SLURM_PROCID"):
        raw = os.environ.get(var)
        if raw and raw.strip().lstrip("-").isdigit():
            return int(raw)
    return 0


class _Run:
    """What a task running in this process owns: spool, buffers, hooks, helper."""

    def __init__(self, task: Task, project: str, name: str, task_type: str, tags: list[str],
                 attach_id: str | None, offline: bool, monitor: bool) -> None:
        self.task = task
        self.run_key = new_run_key()
        self.folder = spool_root() / self.run_key
        self.offline = offline
        self.attach_id = attach_id
        self.deadline_s = _env_float("FLEETDECK_FLUSH_DEADLINE_S", DEFAULT_FLUSH_DEADLINE_S)
        self.buffer = EventBuffer(self.folder, self.run_key, _env_float("FLEETDECK_FLUSH_INTERVAL_S", 0.5))
        self.logger = Logger(self.buffer)
        self.params: args_capture.Params = {}
        self.configuration: dict[str, dict[str, str]] = {}
        self.overrides: list[str] = []
        self.remote = _RemoteTask(attach_id) if attach_id else None
        self.exit_code: int | None = None
        self.failure: str | None = None
        self.closed = False
        self.remote_exit = False
        self.tees: list[ConsoleTee] = []
        self.helper_pid: int | None = None
        self.started = time.time()
        script = os.path.abspath(sys.argv[0]) if sys.argv and sys.argv[0] not in ("", "-c", "-m") else ""
        self.buffer.add_record({
            "kind": "create", "attach": attach_id,
            "fields": {"name": name, "project": project, "type": task_type, "tags": tags},
            "runtime": {"argv": list(sys.argv), "pid": os.getpid(), "rank": _rank(),
                        "run_key": self.run_key, "spool": str(self.folder)},
        })
        run_info = {"parent_pid": os.getpid(), "offline": offline, "deadline_s": self.deadline_s,
                    "monitor": monitor, "cwd": os.getcwd(), "script": script, "executable": sys.executable,
                    "monitor_sample_s": _env_float("FLEETDECK_MONITOR_SAMPLE_S", 1.0),
                    "monitor_report_s": _env_float("FLEETDECK_MONITOR_REPORT_S", 10.0),
                    "capture_env": os.environ.get("FLEETDECK_CAPTURE_ENV", "1") != "0"}
        (self.folder / "run.json").write_text(json.dumps(run_info))

    def start_helper(self) -> None:
        """Spawn the helper process: ``posix_spawn`` of a fresh interpreter, never a fork of this one.

        (``subprocess`` would cost the training process ~10 ms of imports for one call.) The helper
        gets its own session, so the user's Ctrl-C or a closed terminal does not cut its upload
        short, and it inherits only stderr, for its single line about anything left unsent.
        """
        log_path = str(self.folder / "helper.log")
        actions = [(os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
                   (os.POSIX_SPAWN_OPEN, 1, log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)]
        try:
            if sys.__stderr__ is None:
                raise ValueError("no stderr")
            sys.__stderr__.fileno()
        except (AttributeError, ValueError, OSError):
            actions.append((os.POSIX_SPAWN_DUP2, 1, 2))
        self.helper_pid = os.posix_spawn(sys.executable, [sys.executable, "-m", "fleetdeck._reporter", str(self.folder)],
                                         dict(os.environ), file_actions=actions,
                                         setsid=True)

    def helper_running(self) -> bool:
        if self.helper_pid is None:
            return False
        try:
            pid, _ = os.waitpid(self.helper_pid, os.WNOHANG)
        except ChildProcessError:
            return False
        return pid == 0

    # -- hyperparameters ---------------------------------------------------------------------

    def publish_params(self) -> None:
        fields: dict[str, Any] = {"hyperparams": json.loads(json.dumps(self.params))}
        if self.configuration:
            fields["configuration"] = dict(self.configuration)
        self.buffer.add_record({"kind": "update", "fields": fields, "runtime": {"overrides": list(self.overrides)}})

    def apply_section(self, section: str, values: dict[str, Any],
                      converters: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Record a section of parameters; on an agent, stored values override the script's first.

        Returns:
            the names whose values were overridden, mapped to the new values.
        """
        changed: dict[str, Any] = {}
        remote = self.remote.hyperparams().get(section, {}) if self.remote else {}
        for name, local in values.items():
            stored = remote.get(name)
            if stored is None or "value" not in stored:
                continue
            try:
                value = args_capture.cast_like(stored["value"], local, (converters or {}).get(name))
            except (TypeError, ValueError) as exc:
                print(f"fleetdeck: cannot apply stored parameter {section}/{name}={stored['value']!r}: {exc}",
                      file=sys.stderr)
                continue
            if value != local:
                changed[name] = value
                key = f"{section}/{name}"
                if key not in self.overrides:
                    self.overrides.append(key)
        merged = {**values, **changed}
        self.params[section] = {name: args_capture.param(value) for name, value in merged.items()}
        self.publish_params()
        return changed

    def on_args(self, parser: Any, namespace: Any) -> None:
        values = {k: v for k, v in vars(namespace).items() if not k.startswith("_")}
        for name, value in self.apply_section("Args", values, args_capture.converters(parser)).items():
            setattr(namespace, name, value)

    # -- exit ----------------------------------------------------------------------------------

    def close(self, status: str | None = None, reason: str = "") -> None:
        if self.closed:
            return
        self.closed = True
        for tee in self.tees:
            tee.flush_partial()
        _restore_streams(self.tees)
        self.tees = []
        args_capture.unhook_argparse()
        if status is None:
            status = "completed" if not self.exit_code else "failed"
        if status == "failed" and not reason:
            reason = self.failure or f"exit code {self.exit_code}"
        imported = sorted({name.partition(".")[0] for name in list(sys.modules) if not name.startswith("_")})
        final = {"kind": "close", "status": status, "reason": reason[-10_000:],
                 "runtime": {"exit_code": self.exit_code if self.exit_code is not None else
                             (0 if status == "completed" else 1),
                             "duration_s": round(time.time() - self.started, 3)},
                 "imported": imported}
        if self.remote_exit:
            final = {"kind": "close", "status": None, "imported": imported, "runtime": {}}
        self.buffer.close(final)
        if self.offline:
            print(f"fleetdeck: offline run saved in {self.folder}; upload it with `fleetdeck sync {self.folder}`",
                  file=sys.__stderr__ or sys.stderr)


class _RemoteTask:
    """The stored task an agent asked this process to run, fetched in the background.

    ``Task.init`` returns at once; the first argparse call or ``connect`` waits (up to
    ``FLEETDECK_PARAMS_TIMEOUT_S``) for the stored parameters so it can apply them.
    """

    def __init__(self, task_id: str) -> None:
        self.task_id = task_id
        self._doc: dict[str, Any] = {}
        self._done = threading.Event()
        self._error: str | None = None
        threading.Thread(target=self._fetch, name="fleetdeck-params", daemon=True).start()

    def _fetch(self) -> None:
        try:
            from fleetdeck.client import Client

            with Client() as client:
                self._doc = client.get_task(self.task_id)
        except Exception as exc:
            self._error = str(exc)
        finally:
            self._done.set()

    def doc(self) -> dict[str, Any]:
        if not self._done.wait(_env_float("FLEETDECK_PARAMS_TIMEOUT_S", 30.0)):
            self._error = "timed out"
            self._done.set()
        if self._error:
            print(f"fleetdeck: cannot fetch the parameters of task {self.task_id} ({self._error}); "
                  "running with the script's own values", file=sys.stderr)
            self._error = None
        return self._doc

    def hyperparams(self) -> dict[str, Any]:
        return self.doc().get("hyperparams") or {}

    def configuration(self) -> dict[str, Any]:
        return self.doc().get("configuration") or {}


def _restore_streams(tees: list[ConsoleTee]) -> None:
    if isinstance(sys.stdout, ConsoleTee) and sys.stdout in tees:
        sys.stdout = sys.stdout.original
    if isinstance(sys.stderr, ConsoleTee) and sys.stderr in tees:
        sys.stderr = sys.stderr.original


class Task:
    """A tracked experiment run (ClearML-compatible names).

    Create the run of the current script with :meth:`init`; look up stored runs with
    :meth:`get_task` / :meth:`get_tasks`.
    """

    _current: Task | None = None

    def __init__(self, doc: dict[str, Any] | None = None, *, _client: Client | None = None) -> None:
        self._doc: dict[str, Any] = doc or {}
        self._client_obj = _client
        self._run: _Run | None = None
        self._noop = False

    # -- creating the run ------------------------------------------------------------------------

    @classmethod
    def init(cls, project_name: str | None = None, task_name: str | None = None, task_type: str = "training",
             tags: list[str] | None = None, reuse_last_task_id: bool = False, output_uri: Any = None,
             auto_connect_arg_parser: bool = True, auto_connect_frameworks: bool | Mapping[str, bool] = True,
             auto_resource_monitoring: bool = True, auto_connect_streams: bool = True, **_: Any) -> Task:
        """Start tracking this script; returns at once (all network work happens in a helper process).

        Args:
            project_name: project to file the run under (created when missing).
            task_name: name of the run; defaults to the script's file name.
            task_type: ``training``, ``testing``, ``inference``, ``data_processing``, ...
            tags: labels to attach.
            reuse_last_task_id: accepted for ClearML compatibility; a new run never overwrites an
                earlier one, so it is ignored.
            auto_connect_arg_parser: record argparse results (section ``Args``).
            auto_connect_frameworks: hook matplotlib, TensorBoard writers and ``torch.save`` when
                the script imports them (a dict selects: ``{"matplotlib": False}``).
            auto_resource_monitoring: sample CPU, memory, disk, network and GPUs.
            auto_connect_streams: capture stdout and stderr.

        Returns:
            the running task; in ranks other than 0 of a distributed run, a task whose calls do nothing.
        """
        if cls._current is not None:
            return cls._current
        if _rank() != 0:
            task = cls()
            task._noop = True
            task._run = None
            cls._current = task
            return task
        script_name = Path(sys.argv[0]).name if sys.argv and sys.argv[0] else "interactive"
        for label, value in (("project_name", project_name), ("task_name", task_name)):
            if value is not None and not (isinstance(value, str) and 0 < len(value) <= 200):
                raise FleetdeckError(f"Task.init: {label} must be a string of 1 to 200 characters, got {value!r:.60}")
        task = cls()
        offline = _offline_override if _offline_override is not None else _env_flag("FLEETDECK_OFFLINE")
        attach = os.environ.get("FLEETDECK_TASK_ID") or None
        try:
            run = _Run(task, project_name or "default", task_name or script_name, task_type, list(tags or []),
                       attach, offline, auto_resource_monitoring)
        except OSError as exc:  # no spool, no tracking; but the training itself must still run
            print(f"fleetdeck: cannot create the run's spool under {spool_root()} ({exc.strerror or exc}); "
                  "this run is NOT tracked (set FLEETDECK_SPOOL_DIR to a writable folder)", file=sys.stderr)
            task._noop = True
            cls._current = task
            return task
        task._run = run
        task._doc = {"id": attach, "name": task_name or script_name, "project_name": project_name or "default"}
        cls._current = task
        if auto_connect_streams and not _env_flag("FLEETDECK_AGENT_CONSOLE"):  # an agent already streams it
            for stream_name in ("stdout", "stderr"):
                if getattr(sys, stream_name) is None:  # pythonw, some daemons
                    continue
                tee = ConsoleTee(getattr(sys, stream_name), stream_name, run.buffer.console)
                setattr(sys, stream_name, tee)
                run.tees.append(tee)
        if auto_connect_arg_parser:
            args_capture.hook_argparse(run.on_args)
        if auto_connect_frameworks:
            from fleetdeck import _capture_frameworks

            wanted = auto_connect_frameworks if isinstance(auto_connect_frameworks, Mapping) else {}
            _capture_frameworks.install(task, wanted)
        _install_exit_hooks()
        run.start_helper()
        return task

    # -- identity ----------------------------------------------------------------------------------

    @property
    def id(self) -> str:
        """The task's id on the server (waits, for a new run, until the helper has created it)."""
        if self._doc.get("id"):
            return str(self._doc["id"])
        if self._noop:
            return ""
        run = self._run
        assert run is not None
        if run.offline:
            return f"offline-{run.run_key}"
        timeout = _env_float("FLEETDECK_ID_TIMEOUT_S", 10.0)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            task_id = read_state(run.folder).get("task_id")
            if task_id:
                self._doc["id"] = task_id
                return str(task_id)
            time.sleep(0.02)
        raise FleetdeckError(f"the server has not created this run's task after {timeout:.0f}s (it is "
                             f"spooled in {run.folder}; see helper.log there)")

    @property
    def name(self) -> str:
        return str(self._doc.get("name", ""))

    @property
    def status(self) -> str:
        return str(self._fetch().get("status", ""))

    def get_status(self) -> str:
        return self.status

    @property
    def project(self) -> str:
        return str(self._doc.get("project_name") or self._doc.get("project") or "")

    def get_project_name(self) -> str:
        return self.project

    @property
    def data(self) -> dict[str, Any]:
        """The stored task document (fetched from the server)."""
        return self._fetch()

    def __repr__(self) -> str:
        return f"<Task {self.name!r} id={self._doc.get('id') or '(pending)'}>"

    # -- reporting ---------------------------------------------------------------------------------

    def get_logger(self) -> Logger:
        """The logger of this run (a no-op logger on a handle or a non-zero rank)."""
        return self._run.logger if self._run is not None else Logger(None)

    def connect(self, mutable: Any, name: str | None = None) -> Any:
        """Record a dict or an object's attributes as parameters of section ``name`` (default ``General``).

        On an agent the stored values are written back into ``mutable`` first (dicts are updated in
        place, objects get ``setattr``). Returns ``mutable``.
        """
        section = name or ("Args" if type(mutable).__name__ == "Namespace" else "General")
        if self._run is None:
            return mutable
        if isinstance(mutable, dict):
            flat = args_capture.flatten(mutable)
            for key, value in self._run.apply_section(section, flat).items():
                args_capture.set_dotted(mutable, key, value)
        else:
            fields = args_capture.object_fields(mutable)
            for key, value in self._run.apply_section(section, fields).items():
                setattr(mutable, key, value)
        return mutable

    def connect_configuration(self, configuration: Any, name: str | None = None,
                              description: str | None = None) -> Any:
        """Store a configuration file's text or a dict (as JSON) under ``name`` (default ``General``).

        On an agent with an edited stored configuration, a path argument gets the path of a file
        holding the stored text and a dict gets the stored dict.
        """
        name = name or "General"
        if self._run is None:
            return configuration
        run = self._run
        stored = run.remote.configuration().get(name) if run.remote else None
        if isinstance(configuration, Mapping):
            text, kind = json.dumps(configuration, indent=2, default=str), "json"
        else:
            path = Path(configuration)
            try:
                text = path.read_text(encoding="utf-8")
            except OSError as exc:
                raise FleetdeckError(f"connect_configuration: cannot read {path}: {exc.strerror}") from None
            kind = path.suffix.lstrip(".") or "text"
        result = configuration
        if stored and stored.get("value") and stored["value"] != text:
            text = stored["value"]
            run.overrides.append(f"configuration/{name}")
            if isinstance(configuration, Mapping):
                result = json.loads(text)
            else:
                override = run.folder / "files" / f"configuration-{len(run.overrides)}{Path(configuration).suffix}"
                override.write_text(text, encoding="utf-8")
                result = str(override) if isinstance(configuration, str) else override
        run.configuration[name] = {"value": text, "type": kind, "description": description or ""}
        run.publish_params()
        return result

    def upload_artifact(self, name: str, artifact_object: Any, metadata: Mapping[str, Any] | None = None,
                        delete_after_upload: bool = False, wait_on_upload: bool = False, **_: Any) -> bool:
        """Store a file, folder (archived), dict, numpy array, pandas frame or other object as an artifact.

        The object is serialised into the spool now; the helper uploads it in the background
        (chunked, resumable, sha256-verified). ``wait_on_upload`` waits until the server has it.
        """
        if self._run is None:
            if self._noop:
                return False
            raise FleetdeckError("upload_artifact needs the task running in this process")
        from fleetdeck.artifacts import prepare

        prepared = prepare(name, artifact_object, self._run.folder / "files", delete_after_upload)
        self._run.buffer.add_record({"kind": "artifact", "name": name, "artifact_kind": "artifact",
                                     **prepared, "metadata": {**prepared["metadata"], **dict(metadata or {})}})
        if wait_on_upload:
            self.flush(wait_for_uploads=True)
        return True

    def update_output_model(self, model_path: str, name: str | None = None, **_: Any) -> None:
        """Register a model file as an output model of this run."""
        if self._run is None:
            return
        path = os.path.abspath(model_path)
        self._run.buffer.add_record({"kind": "artifact", "name": name or Path(path).name, "artifact_kind": "model",
                                     "path": path, "delete_after": False, "content_type": "",
                                     "metadata": {"type": "model", "filename": Path(path).name}})

    def flush(self, wait_for_uploads: bool = False, timeout: float | None = None) -> bool:
        """Spool buffered events now; with ``wait_for_uploads``, wait until the server has them all.

        Returns:
            True when everything reported so far is spooled (and uploaded, when waiting for it).
        """
        if self._run is None:
            return True
        run = self._run
        run.buffer.flush()
        if not wait_for_uploads or run.offline:
            return True
        from fleetdeck.spool import PROCESS, pending

        deadline = time.monotonic() + (timeout if timeout is not None else 60.0)
        while time.monotonic() < deadline:
            if not pending(run.folder, PROCESS):
                return True
            if not run.helper_running():
                return False
            time.sleep(0.02)
        return False

    # -- parameters ------------------------------------------------------------------------------

    def get_parameters(self) -> dict[str, Any]:
        """All parameters as ``{"Section/name": value}``."""
        sections = self._run.params if self._run is not None else (self._fetch().get("hyperparams") or {})
        return {f"{section}/{name}": p.get("value") for section, params in sections.items()
                for name, p in params.items()}

    def get_parameters_as_dict(self) -> dict[str, dict[str, Any]]:
        """Parameters as ``{section: {name: value}}``."""
        flat = self.get_parameters()
        nested: dict[str, dict[str, Any]] = {}
        for key, value in flat.items():
            section, _, name = key.partition("/")
            nested.setdefault(section, {})[name] = value
        return nested

    def set_parameters(self, parameters: Mapping[str, Any]) -> None:
        """Set parameters given as ``{"Section/name": value}`` (a name without section goes to ``General``)."""
        grouped: dict[str, dict[str, Any]] = {}
        for key, value in parameters.items():
            section, _, name = key.partition("/") if "/" in key else ("General", "", key)
            grouped.setdefault(section, {})[name] = value
        if self._run is not None:
            for section, values in grouped.items():
                self._run.params.setdefault(section, {}).update(
                    {n: args_capture.param(v) for n, v in values.items()})
            self._run.publish_params()
            return
        if self._noop:
            return
        stored = self._fetch().get("hyperparams") or {}
        for section, values in grouped.items():
            stored.setdefault(section, {}).update({n: args_capture.param(v) for n, v in values.items()})
        self._doc = self._client().update_task(self.id, hyperparams=stored)

    def get_configuration_object(self, name: str) -> str | None:
        item = (self._fetch().get("configuration") or {}).get(name)
        return item.get("value") if item else None

    # -- reading results ---------------------------------------------------------------------------

    def get_reported_scalars(self, max_samples: int = 0) -> dict[str, dict[str, dict[str, list[float]]]]:
        """``{title: {series: {"x": iterations, "y": values}}}`` as stored on the server."""
        client = self._client()
        result: dict[str, dict[str, dict[str, list[float]]]] = {}
        for series in client.list_series(self.id):
            data = client.get_series(self.id, series["metric"], series["variant"], max_points=max_samples or None)
            points = data.get("points", data)
            xs = points.get("iterations", points.get("x", [])) if isinstance(points, dict) else []
            ys = points.get("values", points.get("y", [])) if isinstance(points, dict) else []
            result.setdefault(series["metric"], {})[series["variant"]] = {"x": xs, "y": ys}
        return result

    def get_reported_console_output(self, number_of_reports: int = 1) -> list[str]:
        """The last console lines stored on the server (up to ``number_of_reports`` × 1000)."""
        client = self._client()
        limit = max(1, number_of_reports) * 1000
        page = client.get_console(self.id, start=-limit, limit=min(limit, 10_000))
        return [item["line"] for item in page["items"]]

    @property
    def artifacts(self) -> dict[str, Artifact]:
        """The task's stored artifacts and models by name."""
        from fleetdeck.artifacts import Artifact

        items = self._client().get(f"/tasks/{self.id}/artifacts")["items"]
        return {item["name"]: Artifact(item, self._client()) for item in items}

    @property
    def models(self) -> dict[str, list[Artifact]]:
        """ClearML-style ``{"output": [...], "input": [...]}`` model lists."""
        from fleetdeck.artifacts import Artifact

        items = self._client().get(f"/tasks/{self.id}/artifacts", kind="model")["items"]
        result: dict[str, list[Artifact]] = {"input": [], "output": []}
        for item in items:
            result.setdefault(item.get("mode", "output"), []).append(Artifact(item, self._client()))
        return result

    # -- status ------------------------------------------------------------------------------------

    def close(self) -> None:
        """End this run: the console, buffers and final status go to the spool; returns at once.

        The helper uploads what is left within the flush deadline (``FLEETDECK_FLUSH_DEADLINE_S``,
        default 10 s) after the process exits; anything later stays spooled for ``fleetdeck sync``.
        """
        if self._run is not None:
            self._run.close()
        if Task._current is self:
            Task._current = None

    def mark_completed(self, ignore_errors: bool = True, status_message: str | None = None, force: bool = False) -> None:
        if self._run is not None:
            self._run.close("completed", status_message or "")
            return
        if not self._noop:
            self._client().set_status(self.id, "completed", status_message or "", force=force)

    def mark_failed(self, ignore_errors: bool = True, status_reason: str | None = None,
                    status_message: str | None = None, force: bool = False) -> None:
        reason = status_reason or status_message or "marked failed"
        if self._run is not None:
            self._run.close("failed", reason)
            return
        if not self._noop:
            self._client().set_status(self.id, "failed", reason, force=force)

    def mark_started(self, force: bool = False) -> None:
        if self._run is None and not self._noop:
            self._client().set_status(self.id, "in_progress", force=force)

    # -- remote execution --------------------------------------------------------------------------

    def execute_remotely(self, queue_name: str | None = None, clone: bool = False, exit_process: bool = True) -> Task | None:
        """Stop running here and put this task (or a clone) on ``queue_name`` for an agent.

        On an agent (``FLEETDECK_TASK_ID`` is set) this does nothing, so the same script runs there.
        """
        run = self._run
        if run is None or run.attach_id:
            return None
        if run.offline:
            raise FleetdeckError("execute_remotely needs a server; this run is offline")
        if not self.flush(wait_for_uploads=True, timeout=run.deadline_s):
            raise FleetdeckError(f"cannot reach the server to enqueue the task (records are kept in {run.folder})")
        client = self._client()
        if clone:
            copy = Task.clone(self)
            if queue_name:
                Task.enqueue(copy, queue_name=queue_name)
            return copy
        client.set_status(self.id, "stopped", "enqueued by execute_remotely")
        if queue_name:
            client.enqueue(self.id, queue_name)
        run.remote_exit = True
        print(f"fleetdeck: task {self.id} enqueued on {queue_name!r}; exiting the local run", file=sys.stderr)
        if exit_process:
            run.close()
            sys.exit(0)
        return None

    @classmethod
    def clone(cls, source_task: Task | str, name: str | None = None, comment: str | None = None,
              parent: str | None = None, project: str | None = None) -> Task:
        """Create a new task (status ``created``) with the source's parameters, configuration and code."""
        client = _default_client()
        source = client.get_task(source_task if isinstance(source_task, str) else source_task.id)
        doc = client.create_task(name=name or f"{source['name']} (clone)",
                                 project=project or source.get("project_name") or source["project"],
                                 parent=parent or source["id"], comment=comment or f"cloned from {source['id']}",
                                 **clone_fields(source))
        return cls(doc, _client=client)

    @classmethod
    def enqueue(cls, task: Task | str, queue_name: str | None = None, queue_id: str | None = None) -> dict[str, Any]:
        """Put a stored task on a queue (``default`` when none is named)."""
        client = _default_client()
        task_id = task if isinstance(task, str) else task.id
        return client.enqueue(task_id, queue_name or queue_id or "default")

    # -- lookup ------------------------------------------------------------------------------------

    @classmethod
    def current_task(cls) -> Task | None:
        """The task this process is running, if ``Task.init`` was called."""
        return cls._current

    @classmethod
    def get_task(cls, task_id: str | None = None, project_name: str | None = None,
                 task_name: str | None = None) -> Task:
        """A stored task by id, or the newest one with this name in this project."""
        client = _default_client()
        if task_id:
            return cls(client.get_task(task_id), _client=client)
        found = client.list_tasks(project=project_name, name=task_name, order_by="-created", page_size=50)["items"]
        exact = [t for t in found if task_name is None or t["name"] == task_name]
        if not exact:
            from fleetdeck.errors import NotFound

            raise NotFound(f"no task named {task_name!r} in project {project_name!r}")
        return cls(client.get_task(exact[0]["id"]), _client=client)

    @classmethod
    def get_tasks(cls, project_name: str | None = None, task_name: str | None = None, tags: list[str] | None = None,
                  status: list[str] | None = None, **_: Any) -> list[Task]:
        """Stored tasks matching the filters (``task_name`` is a substring), newest first."""
        client = _default_client()
        items = client.iter_tasks(project=project_name, name=task_name, tag=tags, status=status)
        return [cls(item, _client=client) for item in items]

    # -- offline -----------------------------------------------------------------------------------

    @staticmethod
    def set_offline(offline_mode: bool = False) -> None:
        """Record runs to the local spool only (upload later with ``fleetdeck sync``)."""
        global _offline_override
        _offline_override = bool(offline_mode)

    @staticmethod
    def is_offline() -> bool:
        return _offline_override if _offline_override is not None else _env_flag("FLEETDECK_OFFLINE")

    # -- internals ---------------------------------------------------------------------------------

    def _client(self) -> Client:
        if self._client_obj is None:
            self._client_obj = _default_client()
        return self._client_obj

    def _fetch(self) -> dict[str, Any]:
        if self._noop:
            return {}
        if self._run is not None:
            self.flush(wait_for_uploads=True, timeout=5.0)
        self._doc = self._client().get_task(self.id)
        return self._doc


def _default_client() -> Client:
    """The process's shared client, imported late so ``import fleetdeck`` does not load httpx."""
    from fleetdeck.client import shared_client

    return shared_client()


# -- process exit ----------------------------------------------------------------------------------

_hooks_installed = False


def _install_exit_hooks() -> None:
    """Record uncaught exceptions and ``sys.exit`` codes, and close the run at interpreter exit."""
    global _hooks_installed
    if _hooks_installed:
        return
    _hooks_installed = True
    previous_hook = sys.excepthook
    original_exit = sys.exit

    def excepthook(exc_type: type[BaseException], exc: BaseException, tb: Any) -> None:
        previous_hook(exc_type, exc, tb)  # first, so the console capture keeps the traceback
        task = Task._current
        if task is not None and task._run is not None:
            run = task._run
            if issubclass(exc_type, KeyboardInterrupt):
                run.exit_code = 130
                run.close("aborted", "interrupted (KeyboardInterrupt)")
            else:
                import traceback

                run.exit_code = 1
                run.failure = "".join(traceback.format_exception(exc_type, exc, tb))
                run.close("failed", run.failure)

    def exit_recording(code: Any = None) -> None:
        task = Task._current
        if task is not None and task._run is not None:
            task._run.exit_code = code if isinstance(code, int) else (0 if code is None else 1)
            if not isinstance(code, int) and code is not None:
                task._run.failure = str(code)
        original_exit(code)

    sys.excepthook = excepthook
    sys.exit = exit_recording
    atexit.register(_close_at_exit)


def _close_at_exit() -> None:
    task = Task._current
    if task is None or task._run is None:
        return
    try:
        task._run.close()
    except Exception as exc:  # the script's own exit code must not change
        print(f"fleetdeck: could not finish recording the run: {exc}", file=sys.__stderr__)
