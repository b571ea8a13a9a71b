"""Process supervision for the local stack: start a service in its own session, wait until it
is ready, tell whether it still runs, stop it.

Services are started in their own sessions so they outlive the command that started them;
stopping one stops exactly the process recorded in the state, after checking that its pid
still runs the process that was started (same kernel start time).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import httpx

from proxy.devstack.state import Process, StackState

START_TIMEOUT_S = 180.0


class StackError(RuntimeError):
    """A service of the stack failed to start; the message includes its log's tail."""


class Supervisor:
    """Starts, watches and stops the processes of one run folder."""

    def __init__(self, run_dir: Path, state_file: Path) -> None:
        self._run_dir = run_dir
        self._state_file = state_file
        # Handles of the processes this object started, so they are reaped (not left as zombies).
        self._children: dict[int, subprocess.Popen[bytes]] = {}

    def spawn(
        self,
        state: StackState,
        name: str,
        command: list[str],
        *,
        cwd: Path | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        """Start ``command`` as service ``name``, logging to ``<name>.log``; record it."""
        log = self._run_dir / f"{name}.log"
        with log.open("ab") as out:
            process = subprocess.Popen(  # noqa: S603 - our own command lines
                command,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=cwd,
                start_new_session=True,
                env=None if env is None else {**os.environ, **env},
            )
        self._children[process.pid] = process
        state.processes[name] = Process(
            pid=process.pid, command=command, log=str(log), started=_start_time(process.pid) or 0
        )
        state.save(self._state_file)

    def alive(self, state: StackState, name: str) -> bool:
        """Whether service ``name`` is the process that was started, still running."""
        process = state.processes.get(name)
        if process is None or not _running(process.pid):
            return False
        return _start_time(process.pid) == process.started

    def stop(self, state: StackState, name: str, *, kill: bool = False) -> bool:
        """Stop service ``name`` if it is still the process we started; True if it was running.

        ``kill`` sends SIGKILL at once, as a crash would, instead of asking it to stop.
        """
        process = state.processes.get(name)
        if process is None or not self.alive(state, name):
            return False
        try:
            os.killpg(process.pid, signal.SIGKILL if kill else signal.SIGTERM)
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline and _running(process.pid):
                time.sleep(0.1)
            if _running(process.pid):
                os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        child = self._children.pop(process.pid, None)
        if child is not None:
            child.wait(timeout=10)
        else:
            _reap(process.pid)
        state.save(self._state_file)
        return True

    def wait_log(self, state: StackState, name: str, marker: str) -> None:
        """Until ``marker`` appears in the service's log."""
        process = state.processes[name]
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if marker in Path(process.log).read_text(encoding="utf-8", errors="replace"):
                return
            self._check_started(state, name)
            time.sleep(0.2)
        raise StackError(f"{name} did not start within {START_TIMEOUT_S:.0f} s" + _tail(process))

    def wait_port(self, state: StackState, name: str, port: int) -> None:
        """Until something listens on ``port``."""
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            self._check_started(state, name)
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
                return
            time.sleep(0.2)
        raise StackError(f"{name} is not listening on port {port}" + _tail(state.processes[name]))

    def wait_http(self, state: StackState, name: str, url: str) -> None:
        """Until ``url`` answers 200."""
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            self._check_started(state, name)
            try:
                if httpx.get(url, timeout=2.0).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise StackError(f"{name} not ready at {url}" + _tail(state.processes[name]))

    def _check_started(self, state: StackState, name: str) -> None:
        if not self.alive(state, name):
            raise StackError(f"{name} exited while starting" + _tail(state.processes[name]))


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie child of ours has exited
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def _start_time(pid: int) -> int | None:
    """Field 22 of /proc/PID/stat: when the process started, in clock ticks since boot."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return int(fields[19])


def _reap(pid: int) -> None:
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def _tail(process: Process) -> str:
    try:
        lines = Path(process.log).read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return ""
    return "\n--- last lines of " + process.log + " ---\n" + "\n".join(lines[-25:])
