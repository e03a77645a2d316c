"""Starts, health-checks and stops the cluster's processes.

Each process runs in its own session (so it outlives `hack/cluster up`) with its output in
logs/<name>.log and its pid in run/<name>.pid next to the executable it was started from.
`stop` only signals a pid whose /proc entry still runs that executable: never a stranger
that happens to have reused the pid.
"""
from __future__ import annotations

import json
import os
import signal
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

from .components import Component
from .layout import Layout


class ComponentFailed(RuntimeError):
    pass


def _pidfile(layout: Layout, name: str) -> Path:
    return layout.run_dir / f"{name}.pid"


def log_path(layout: Layout, name: str) -> Path:
    return layout.logs_dir / f"{name}.log"


def log_tail(layout: Layout, name: str, lines: int = 30) -> str:
    path = log_path(layout, name)
    if not path.exists():
        return "(no log)"
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def running_pid(layout: Layout, name: str) -> int | None:
    """The pid of our process for this component, if it is still alive."""
    path = _pidfile(layout, name)
    try:
        record = json.loads(path.read_text())
        exe = Path(f"/proc/{record['pid']}/cmdline").read_bytes().split(b"\0")[0].decode()
    except (OSError, ValueError, KeyError):
        return None
    return record["pid"] if exe == record["exe"] else None


def start(layout: Layout, component: Component) -> subprocess.Popen:
    layout.logs_dir.mkdir(parents=True, exist_ok=True)
    layout.run_dir.mkdir(parents=True, exist_ok=True)
    for path, text in component.files.items():
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(text)
    log = open(log_path(layout, component.name), "ab")
    env = {**os.environ, **component.env}
    proc = subprocess.Popen(component.argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                            env=env, start_new_session=True, cwd=layout.state_dir)
    log.close()
    _pidfile(layout, component.name).write_text(json.dumps({"pid": proc.pid, "exe": component.argv[0],
                                                            "argv": component.argv}))
    return proc


def started_with(layout: Layout, name: str) -> list[str] | None:
    """The command line our running process for `name` was started with (None: not recorded)."""
    try:
        return json.loads(_pidfile(layout, name).read_text()).get("argv")
    except (OSError, ValueError):
        return None


def is_healthy(layout: Layout, component: Component, timeout: float = 2.0) -> bool:
    ctx = None
    if component.health_url.startswith("https"):
        if component.insecure_health:
            ctx = ssl._create_unverified_context()  # self-signed serving cert of kcm/scheduler
        else:
            ctx = ssl.create_default_context(cafile=str(layout.pki_dir / "ca.crt"))
    try:
        with urllib.request.urlopen(component.health_url, timeout=timeout, context=ctx) as resp:
            return resp.status == 200
    except (urllib.error.URLError, OSError, ValueError):
        return False


def wait_healthy(layout: Layout, component: Component, proc: subprocess.Popen, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if is_healthy(layout, component):
            return
        if proc.poll() is not None:
            raise ComponentFailed(f"{component.name} exited during start-up; last log lines:\n"
                                  f"{log_tail(layout, component.name)}")
        time.sleep(0.2)
    raise ComponentFailed(f"{component.name} not healthy at {component.health_url} after {timeout:.0f}s; "
                          f"last log lines:\n{log_tail(layout, component.name)}")


def stop(layout: Layout, name: str, grace: float = 10.0) -> bool:
    """Stops our process for `name` (and its process group); True if one was running."""
    pid = running_pid(layout, name)
    pidfile = _pidfile(layout, name)
    if pid is None:
        pidfile.unlink(missing_ok=True)
        return False
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        pass
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and running_pid(layout, name) == pid:
        time.sleep(0.1)
    if running_pid(layout, name) == pid:
        try:
            os.killpg(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        while running_pid(layout, name) == pid:  # reaped by init once killed; zombies show no cmdline
            time.sleep(0.05)
    pidfile.unlink(missing_ok=True)
    return True
