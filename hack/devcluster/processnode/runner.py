"""One pod on the process node: its volumes, its containers' processes, its status.

A PodRunner thread owns a pod from the moment it is bound to the node until it reaches a
terminal phase or is deleted. It restarts containers per restartPolicy (back-off 1 s doubling
to 30 s, shorter than kubelet's 10 s-5 min so tests stay quick), probes readiness, renews
projected tokens, and patches the pod's status whenever what it reports changes.
"""
from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from . import images, plan, podstatus, probes, volumes
from .podstatus import ContainerRecord

log = logging.getLogger("process-node")
LAUNCHER = [sys.executable, "-m", "devcluster.processnode.launch"]
HACK_DIR = str(Path(__file__).resolve().parents[2])
MAX_MESSAGE = 4096


def _covers_node_files(target: str) -> bool:
    """True when a mount at target would cover the Python environment, the project or the node's state."""
    target = os.path.normpath(target)
    own = [sys.prefix, os.path.realpath(sys.prefix), HACK_DIR, os.environ.get("FTO_PROCESS_NODE_STATE", "")]
    return any(p and (p == target or p.startswith(target.rstrip("/") + "/")) for p in own) or target == "/"


class ContainerProcess:
    def __init__(self, pod_dir: Path, cplan: plan.ContainerPlan, volume_paths: dict):
        self.plan, self.pod_dir = cplan, pod_dir
        self.log_path = pod_dir / "logs" / f"{cplan.name}.log"
        self.message_path = pod_dir / "termination" / cplan.name
        mounts, notes, env = [], [], dict(cplan.env)
        for m in cplan.mounts:
            source = Path(volume_paths[m.volume])
            if m.sub_path:
                source = source / m.sub_path
                if not source.exists():
                    source.mkdir(parents=True)
            if _covers_node_files(m.target):
                # Mounting here would hide the interpreter, the project or the node's state from the
                # container itself; /tmp is the common case, and TMPDIR says where scratch space is.
                notes.append(f"not mounting volume {m.volume!r} over {m.target}: it holds the node's own "
                             f"files" + ("; TMPDIR points at the volume instead" if m.target.rstrip("/") == "/tmp"
                                         else ""))
                if m.target.rstrip("/") == "/tmp":
                    env["TMPDIR"] = str(source)
                continue
            mounts.append([str(source), m.target, m.read_only])
        mounts.append([str(self.message_path), cplan.termination_message_path, False])
        cwd = cplan.working_dir or str(pod_dir / "home")
        self.spec = {"argv": cplan.argv, "env": env, "cwd": cwd, "mounts": mounts, "notes": notes,
                     "hostname": cplan.env.get("HOSTNAME", "pod")[:63]}
        self.proc: subprocess.Popen | None = None

    def start(self) -> int:
        for d in (self.log_path.parent, self.message_path.parent, self.pod_dir / "home"):
            d.mkdir(parents=True, exist_ok=True)
        self.message_path.write_bytes(b"")
        spec_path = self.pod_dir / "specs" / f"{self.plan.name}.json"
        spec_path.parent.mkdir(parents=True, exist_ok=True)
        spec_path.write_text(json.dumps(self.spec))
        with open(self.log_path, "ab") as logf:
            self.proc = subprocess.Popen(LAUNCHER + [str(spec_path)], stdout=logf, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, start_new_session=True,
                                         env={"PATH": os.environ.get("PATH", ""), "PYTHONPATH": HACK_DIR})
        return self.proc.pid

    def poll(self) -> int | None:
        rc = self.proc.poll()
        if rc is not None and rc < 0:
            return 128 - rc  # killed by signal N: exit code 128+N, as a container runtime reports it
        return rc

    def signal(self, sig: int) -> None:
        try:
            os.killpg(self.proc.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass

    def termination_message(self, exit_code: int) -> str:
        try:
            message = self.message_path.read_bytes()[:MAX_MESSAGE].decode(errors="replace")
        except OSError:
            message = ""
        if not message and exit_code != 0 and self.plan.fallback_to_logs:
            try:
                lines = self.log_path.read_bytes().decode(errors="replace").splitlines()[-80:]
                message = "\n".join(lines)[-2048:]
            except OSError:
                pass
        return message


class PodRunner(threading.Thread):
    def __init__(self, agent, pod: dict):
        meta = pod["metadata"]
        super().__init__(name=f"pod-{meta['namespace']}/{meta['name']}", daemon=True)
        self.agent, self.pod, self.uid = agent, pod, meta["uid"]
        self.dir = agent.pod_dir(pod)
        spec = pod["spec"]
        self.restart_policy = spec.get("restartPolicy", "Always")
        self.init = [ContainerRecord(c["name"], c["image"]) for c in spec.get("initContainers") or []]
        self.main = [ContainerRecord(c["name"], c["image"]) for c in spec["containers"]]
        self.procs: dict[str, ContainerProcess] = {}
        self.envs: dict[str, dict] = {}
        self.ip = agent.ips.allocate(self.uid)
        self.start_time = podstatus.now()
        self.stopping = threading.Event()
        self.grace = 30.0
        self._last_pushed = None
        self._readiness: dict[str, probes.ReadinessTracker] = {}

    # --- lifecycle -------------------------------------------------------------------------
    def request_stop(self, grace: float) -> None:
        self.grace = grace
        self.stopping.set()

    def run(self) -> None:
        try:
            self._run()
        except Exception as err:  # report, never leave a pod silently stuck
            log.exception("pod %s failed in the agent", self.name)
            self._fail_all(f"process node error: {err}", "ProcessNodeError")
        finally:
            self._kill_all(self.grace if self.stopping.is_set() else 0)
            self.agent.ips.release(self.uid)
            self.agent.runner_done(self)

    def _run(self) -> None:
        self.push()
        pod_volumes = self._setup_volumes()
        if pod_volumes is None:
            return
        for spec, record in zip(self.pod["spec"].get("initContainers") or [], self.init):
            if not self._run_init(spec, record, pod_volumes):
                return
        self._supervise(pod_volumes)

    def _setup_volumes(self):
        pod_volumes = volumes.PodVolumes(self.pod, self.dir / "volumes", self.agent.lookup, self.agent.mint_token)
        while not self.stopping.is_set():
            try:
                pod_volumes.setup()
                return pod_volumes
            except (volumes.VolumeError, plan.ConfigError) as err:
                for record in self.init + self.main:
                    record.reason, record.message = "ContainerCreating", str(err)
                self.push()
                self.stopping.wait(2)
        return None

    def _plan(self, spec: dict, record: ContainerRecord) -> plan.ContainerPlan | None:
        try:
            cplan = plan.plan_container(self.pod_with_ip, spec, self.agent.lookup, self.agent.base_env(self.pod, self.ip))
        except images.UnknownImage as err:
            record.state, record.reason, record.message = "waiting", "ErrImagePull", str(err)
            return None
        except plan.ConfigError as err:
            record.state, record.reason, record.message = "waiting", "CreateContainerConfigError", str(err)
            return None
        self.envs[record.name] = cplan.env
        return cplan

    @property
    def pod_with_ip(self) -> dict:
        status = dict(self.pod.get("status") or {}, podIP=self.ip, hostIP=self.agent.host_ip,
                      podIPs=[{"ip": self.ip}])
        return dict(self.pod, status=status)

    def _start(self, spec: dict, record: ContainerRecord, pod_volumes) -> bool:
        cplan = self._plan(spec, record)
        if cplan is None:
            return False
        proc = ContainerProcess(self.dir, cplan, pod_volumes.paths)
        record.pid = proc.start()
        self.procs[record.name] = proc
        record.state, record.reason, record.message = "running", "", ""
        record.started_at, record.finished_at, record.exit_code = podstatus.now(), None, None
        self._readiness[record.name] = probes.ReadinessTracker(spec.get("readinessProbe"), time.monotonic())
        record.ready = self._readiness[record.name].ready
        return True

    def _exited(self, record: ContainerRecord, rc: int) -> None:
        proc = self.procs.pop(record.name)
        record.state, record.exit_code, record.finished_at = "terminated", rc, podstatus.now()
        record.reason = "Completed" if rc == 0 else "Error"
        record.message = proc.termination_message(rc)
        record.ready = False

    def _restart_later(self, record: ContainerRecord) -> float:
        """Moves a terminated container to CrashLoopBackOff; returns when to start it again."""
        delay = min(30.0, 2.0 ** record.restart_count)
        record.last_state = record.terminated_state()
        record.restart_count += 1
        record.state, record.reason = "waiting", "CrashLoopBackOff"
        record.message = f"back-off {delay:.0f}s restarting failed container={record.name} pod={self.pod['metadata']['name']}"
        return time.monotonic() + delay

    def _run_init(self, spec: dict, record: ContainerRecord, pod_volumes) -> bool:
        while not self.stopping.is_set():
            if not self._start(spec, record, pod_volumes):
                self.push()
                self.stopping.wait(2)
                continue
            self.push()
            while (rc := self.procs[record.name].poll()) is None:
                if self.stopping.wait(0.3):
                    return False
                pod_volumes.refresh()
            self._exited(record, rc)
            if rc == 0:
                self.push()
                return True
            if self.restart_policy == "Never":
                self.push()
                return False
            restart_at = self._restart_later(record)
            self.push()
            self.stopping.wait(max(0.0, restart_at - time.monotonic()))
        return False

    def _supervise(self, pod_volumes) -> None:
        specs = {c["name"]: c for c in self.pod["spec"]["containers"]}
        start_at = {r.name: 0.0 for r in self.main}
        while not self.stopping.is_set():
            now = time.monotonic()
            for record in self.main:
                name = record.name
                if name in self.procs:
                    rc = self.procs[name].poll()
                    if rc is not None:
                        self._exited(record, rc)
                        if self.restart_policy == "Always" or (self.restart_policy == "OnFailure" and rc != 0):
                            start_at[name] = self._restart_later(record)
                        else:
                            start_at[name] = None
                    else:
                        tracker = self._readiness[name]
                        if tracker.due(now):
                            tracker.record(probes.check(tracker.probe, specs[name], self.ip, self.envs[name]), now)
                        record.ready = tracker.ready
                elif start_at[name] is not None and now >= start_at[name]:
                    if not self._start(specs[name], record, pod_volumes):
                        start_at[name] = now + 2.0
            pod_volumes.refresh()
            status = self.push()
            if status["phase"] in ("Succeeded", "Failed"):
                return
            self.stopping.wait(0.25)

    # --- stopping ---------------------------------------------------------------------------
    def _kill_all(self, grace: float) -> None:
        for proc in self.procs.values():
            proc.signal(signal.SIGTERM)
        deadline = time.monotonic() + grace
        while self.procs and time.monotonic() < deadline:
            for name in [n for n, p in self.procs.items() if p.poll() is not None]:
                self.procs.pop(name)
            time.sleep(0.1)
        for proc in self.procs.values():
            proc.signal(signal.SIGKILL)
            proc.proc.wait()
        self.procs.clear()

    def _fail_all(self, message: str, reason: str) -> None:
        for record in self.init + self.main:
            if record.state != "terminated":
                record.state, record.exit_code, record.reason, record.message = "terminated", 137, reason, message
                record.finished_at = podstatus.now()
        status = podstatus.build(self.pod, self.init, self.main, self.ip, self.agent.host_ip, self.start_time,
                                 message=message, reason=reason)
        status["phase"] = "Failed"
        self.agent.patch_status(self.pod, status)

    # --- status -----------------------------------------------------------------------------
    def push(self) -> dict:
        # Build on what we last reported, so unchanged conditions keep their transition times.
        basis = dict(self.pod, status=self._last_pushed) if self._last_pushed else self.pod
        status = podstatus.build(basis, self.init, self.main, self.ip, self.agent.host_ip, self.start_time)
        if status != self._last_pushed:
            if self.agent.patch_status(self.pod, status):
                self._last_pushed = status
        return status
