"""The helper process of a run: ``python -m fleetdeck._reporter RUN_FOLDER``.

``Task.init`` spawns it (a fresh interpreter, never a fork of the training process) so that the
import of the HTTP client, git inspection, the package listing, resource sampling and every
network call cost the training process nothing. It

1. captures code (git) and environment (packages, GPUs) into helper spool records;
2. samples resources of the training process and spools their averages;
3. uploads the spool, in order and exactly once (:mod:`fleetdeck._uploader`), retrying with
   backoff while the server is down;
4. when the training process has exited, keeps uploading for at most the flush deadline, then
   leaves what is left in the spool and prints one line saying how to upload it.

It notices the training process's exit by its parent pid changing, so it never outlives it by
more than the deadline, and it holds ``upload.lock`` so ``fleetdeck sync`` leaves its run alone.
"""

from __future__ import annotations

import fcntl
import json
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

from fleetdeck.spool import HELPER, PROCESS, SpoolWriter, pending, read_header, read_state


def log(message: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {message}", flush=True)


def tell_user(message: str) -> None:
    """One line on the training process's stderr (inherited), also kept in the helper log."""
    log(message)
    try:
        print(message, file=sys.stderr, flush=True)
    except OSError:
        pass


class Helper:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.run = json.loads((folder / "run.json").read_text())
        self.parent_pid = int(self.run["parent_pid"])
        self.capture_done = threading.Event()
        self.writer = SpoolWriter(folder, HELPER)

    def parent_alive(self) -> bool:
        return os.getppid() == self.parent_pid

    # -- capture thread --------------------------------------------------------------------------

    def capture(self) -> None:
        try:
            self._capture_static()
            if self.run.get("monitor", True):
                self._monitor()
            else:
                while self.parent_alive():
                    time.sleep(0.1)
        except Exception as exc:  # capture problems are logged, never fatal to the upload
            log(f"capture failed: {type(exc).__name__}: {exc}")
        finally:
            self.capture_done.set()

    def _capture_static(self) -> None:
        from fleetdeck._capture_code import capture_code
        from fleetdeck._capture_env import capture_environment
        from fleetdeck.monitor import Nvml, visible_gpu_indices

        script, large_diff = capture_code(self.run.get("script", ""), self.run["cwd"],
                                          self.folder / "files" / "code.diff")
        environment = capture_environment(self.run.get("executable", sys.executable))
        self.nvml = Nvml()
        environment.update({"gpus": self.nvml.inventory, "driver": self.nvml.driver, "cuda": self.nvml.cuda})
        gpus = visible_gpu_indices(len(self.nvml.handles), uuids=[g["uuid"] for g in self.nvml.inventory])
        runtime: dict[str, Any] = {"gpus": gpus}
        if self.run.get("capture_env", True):
            runtime["env"] = dict(os.environ)
        self.writer.write({"kind": "update", "fields": {"script": script, "environment": environment},
                           "runtime": runtime})
        if large_diff is not None:
            self.writer.write({"kind": "artifact", "name": "code.diff", "artifact_kind": "artifact",
                               "path": large_diff.name, "delete_after": True, "content_type": "text/x-diff",
                               "metadata": {"type": "diff"}})

    def _monitor(self) -> None:
        from array import array

        from fleetdeck.monitor import RESOURCE_TITLE, ResourceMonitor

        try:
            monitor = ResourceMonitor(self.parent_pid, float(self.run.get("monitor_report_s", 10.0)), self.nvml)
        except Exception as exc:
            log(f"resource monitor unavailable: {exc}")
            while self.parent_alive():
                time.sleep(0.1)
            return
        sample_s = float(self.run.get("monitor_sample_s", 1.0))
        next_sample = time.monotonic()
        while True:
            alive = self.parent_alive()
            averages = monitor.sample() if alive else monitor.report()
            if averages:
                step, now = monitor.elapsed, time.time()
                scalars, payload = [], b""
                for variant, value in sorted(averages.items()):
                    scalars.append({"metric": RESOURCE_TITLE, "variant": variant, "n": 1})
                    payload += array("q", [step]).tobytes() + array("d", [value]).tobytes() + array("d", [now]).tobytes()
                name = self.writer.next_name()
                self.writer.write({"kind": "events", "batch_id": f"{self.folder.name}.{name}", "scalars": scalars,
                                   "console": [], "events": []}, payload)
            if not alive:
                return
            next_sample += sample_s
            while time.monotonic() < next_sample:
                if not self.parent_alive():
                    break
                time.sleep(min(0.1, max(0.0, next_sample - time.monotonic())))

    # -- upload loop -----------------------------------------------------------------------------

    def upload_loop(self) -> int:
        from fleetdeck._uploader import Retry, Uploader
        from fleetdeck.client import Client
        from fleetdeck.errors import AuthError, FleetdeckError

        deadline_s = float(self.run.get("deadline_s", 10.0))
        try:
            client = Client()
        except FleetdeckError as exc:
            tell_user(f"fleetdeck: {exc}; this run is kept in {self.folder} — fix the setting and run `fleetdeck sync`")
            self.wait_capture()
            return 2
        uploader = Uploader(self.folder, client, log)
        parent_gone: float | None = None
        backoff = 0.0
        last_error = ""
        while True:
            if parent_gone is None and not self.parent_alive():
                parent_gone = time.monotonic()
            finished = parent_gone is not None and self.capture_done.is_set()
            if finished:
                self._close_if_killed()
            try:
                uploader.upload(include_close=finished)
                backoff = 0.0
            except Retry as exc:
                if str(exc) != last_error:
                    log(f"upload paused: {exc}")
                last_error = str(exc)
                backoff = min(max(backoff * 2, 0.25), 2.0)
            except AuthError as exc:
                tell_user(f"fleetdeck: {exc}; run kept in {self.folder} — run `fleetdeck sync` with a valid token")
                self.wait_capture()
                return 2
            if finished and not pending(self.folder):
                log(f"run uploaded to task {uploader.task_id}")
                remove_uploaded(self.folder)
                return 0
            if parent_gone is not None and time.monotonic() - parent_gone > deadline_s:
                count = len(pending(self.folder))
                reason = f" ({last_error})" if last_error else ""
                tell_user(f"fleetdeck: {count} record(s) of this run could not be uploaded within {deadline_s:g}s"
                          f"{reason}; they are kept in {self.folder} — run `fleetdeck sync` to upload them")
                self.wait_capture()
                return 1
            wait = backoff or 0.1
            if parent_gone is not None and not backoff:
                wait = 0.02
            time.sleep(wait)

    def wait_capture(self) -> None:
        """Offline or giving up: keep capturing (resources) until the training process ends."""
        while not self.capture_done.wait(0.1):
            pass
        self._close_if_killed()

    def _close_if_killed(self) -> None:
        """A training process that died without closing its task (SIGKILL, os._exit) fails the task."""
        if read_state(self.folder).get("closed") or getattr(self, "_close_written", False):
            return
        for path in pending(self.folder, PROCESS):
            try:
                if read_header(path).get("kind") == "close":
                    return
            except (OSError, ValueError):
                continue
        self._close_written = True
        self.writer.write({"kind": "close", "status": "failed",
                           "reason": "the process ended without closing the task (killed by a signal?)",
                           "runtime": {}, "imported": []})


def remove_uploaded(folder: Path) -> None:
    """Delete a fully uploaded run folder (kept when ``FLEETDECK_KEEP_SPOOL=1``, for debugging)."""
    if os.environ.get("FLEETDECK_KEEP_SPOOL", "") not in ("", "0"):
        return
    import shutil

    if not (folder / "rejected").exists():
        shutil.rmtree(folder, ignore_errors=True)


def main(argv: list[str]) -> int:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the user's Ctrl-C is for the training process
    folder = Path(argv[0])
    lock = open(folder / "upload.lock", "w")
    fcntl.flock(lock, fcntl.LOCK_EX)
    helper = Helper(folder)
    threading.Thread(target=helper.capture, name="capture", daemon=True).start()
    if helper.run.get("offline"):
        helper.wait_capture()
        return 0
    return helper.upload_loop()


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except Exception as exc:  # a helper bug must not print a traceback into the user's terminal
        import traceback

        log(traceback.format_exc())
        tell_user(f"fleetdeck: the reporting helper failed ({type(exc).__name__}: {exc}); the run is kept in "
                  f"{sys.argv[1] if len(sys.argv) > 1 else '?'} — run `fleetdeck sync`")
        sys.exit(3)
