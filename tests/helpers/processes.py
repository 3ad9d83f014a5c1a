"""Real service processes for tests: the relay, Celery workers and the API, each with its log, and
the console script run once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path

from app.core.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def settings_env(settings: Settings, **extra: str) -> dict[str, str]:
    """The environment that makes a child process build exactly these settings."""
    return {**os.environ, **settings.to_env(), **extra}


def run_cli(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "notification-service"), *args],
        env=settings_env(settings),
        capture_output=True,
        text=True,
        timeout=60,
    )


def wait_for(
    predicate: Callable[[], object], timeout: float = 30.0, interval: float = 0.05, what: str = ""
) -> object:
    """Poll until ``predicate`` returns something truthy; fail the test after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or predicate}")
        time.sleep(interval)


class Process:
    def __init__(self, name: str, argv: list[str], env: Mapping[str, str], log_dir: Path) -> None:
        self.name = name
        self.log_path = log_dir / f"{name}-{time.monotonic_ns()}.log"
        self._log = self.log_path.open("wb")
        # Its own process group, so kill() takes gunicorn's workers down with their master.
        self.popen = subprocess.Popen(
            argv,
            env=dict(env),
            cwd=ROOT,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_for_log(self, needle: str, timeout: float = 30.0) -> None:
        def seen() -> bool:
            if self.popen.poll() is not None:
                raise AssertionError(f"{self.name} exited early:\n{self.log()[-3000:]}")
            return needle in self.log()

        wait_for(seen, timeout, 0.1, f"{needle!r} in the {self.name} log")

    def kill(self) -> None:
        """SIGKILL to the process and its children: no cleanup, as when a machine dies."""
        try:
            os.killpg(self.popen.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.popen.wait(10)

    def stop(self, timeout: float = 20.0) -> int:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(5)
        self._log.close()
        return self.popen.returncode


class Processes:
    """Starts service processes for one test and stops every one of them afterwards."""

    def __init__(self, settings: Settings, log_dir: Path) -> None:
        self.settings = settings
        self.log_dir = log_dir
        self.started: list[Process] = []

    def spawn(
        self, name: str, argv: list[str], env: Mapping[str, str], ready: str | None
    ) -> Process:
        process = Process(name, argv, env, self.log_dir)
        self.started.append(process)
        if ready:
            process.wait_for_log(ready)
        return process

    def relay(self, **env: str) -> Process:
        return self.spawn(
            "relay",
            [str(BIN / "notification-service"), "relay"],
            settings_env(self.settings, **env),
            ready="relay started",
        )

    def worker(self, queues: str = "email", **env: str) -> Process:
        return self.spawn(
            f"worker-{queues}",
            [str(BIN / "notification-service"), "worker", "--queues", queues],
            settings_env(self.settings, **env),
            ready=" ready.",
        )

    def api(self, port: int, **env: str) -> Process:
        """``notification-service api`` (gunicorn) on 127.0.0.1:port, answering when returned."""
        import urllib.request

        process = self.spawn(
            f"api-{port}",
            [str(BIN / "notification-service"), "api", "--host", "127.0.0.1", "--port", str(port)],
            settings_env(self.settings, **env),
            ready="Booting worker",
        )

        def live() -> bool:
            url = f"http://127.0.0.1:{port}/api/v1/health/live"
            try:
                with urllib.request.urlopen(url, timeout=2):
                    return True
            except OSError:
                return False

        wait_for(live, what=f"API on port {port}")
        return process

    def stop_all(self) -> None:
        for process in reversed(self.started):
            process.stop()
