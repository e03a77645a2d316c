"""Pure: what the agent knows about a pod's containers -> the pod's status, as kubelet reports it."""
from __future__ import annotations

import dataclasses
import datetime
from typing import Optional


def now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclasses.dataclass
class ContainerRecord:
    name: str
    image: str
    state: str = "waiting"  # waiting | running | terminated
    reason: str = "ContainerCreating"
    message: str = ""
    started_at: Optional[str] = None
    finished_at: Optional[str] = None
    exit_code: Optional[int] = None
    pid: Optional[int] = None
    restart_count: int = 0
    ready: bool = False
    last_state: Optional[dict] = None

    def to_status(self) -> dict:
        if self.state == "running":
            state = {"running": {"startedAt": self.started_at}}
        elif self.state == "terminated":
            state = {"terminated": {k: v for k, v in {
                "exitCode": self.exit_code, "reason": self.reason, "message": self.message or None,
                "startedAt": self.started_at, "finishedAt": self.finished_at,
                "containerID": f"process://{self.pid}" if self.pid else None}.items() if v is not None}}
        else:
            state = {"waiting": {k: v for k, v in {"reason": self.reason, "message": self.message or None}.items() if v}}
        status = {"name": self.name, "image": self.image, "imageID": "", "ready": self.ready,
                  "started": self.state == "running", "restartCount": self.restart_count, "state": state,
                  "lastState": self.last_state or {}}
        if self.pid:
            status["containerID"] = f"process://{self.pid}"
        return status

    def terminated_state(self) -> dict:
        return self.to_status()["state"]


def phase(init: list[ContainerRecord], main: list[ContainerRecord], restart_policy: str) -> str:
    """Kubelet's rules (getPhase), for containers that run as processes."""
    for c in init:
        if c.state == "terminated" and c.exit_code != 0 and restart_policy == "Never":
            return "Failed"
        if not (c.state == "terminated" and c.exit_code == 0):
            return "Pending"
    running = sum(c.state == "running" or (c.state == "waiting" and c.restart_count > 0) for c in main)
    waiting = sum(c.state == "waiting" and c.restart_count == 0 for c in main)
    succeeded = sum(c.state == "terminated" and c.exit_code == 0 for c in main)
    failed = sum(c.state == "terminated" and c.exit_code != 0 for c in main)
    if waiting:
        return "Running" if running or succeeded or failed else "Pending"
    if running:
        return "Running"
    if restart_policy == "Always":
        return "Running"
    if failed:
        return "Running" if restart_policy == "OnFailure" else "Failed"
    return "Succeeded"


def _condition(previous: dict, ctype: str, ok: bool, reason: str = "") -> dict:
    status = "True" if ok else "False"
    old = previous.get(ctype)
    cond = {"type": ctype, "status": status,
            "lastTransitionTime": old["lastTransitionTime"] if old and old.get("status") == status else now()}
    if reason and not ok:
        cond["reason"] = reason
    return cond


def build(pod: dict, init: list[ContainerRecord], main: list[ContainerRecord], pod_ip: str, host_ip: str,
          start_time: str, message: str = "", reason: str = "") -> dict:
    """The whole pod status (sent as a merge patch, so lists are complete)."""
    old_status = pod.get("status") or {}
    previous = {c["type"]: c for c in old_status.get("conditions") or []}
    current_phase = phase(init, main, pod["spec"].get("restartPolicy", "Always"))
    terminal = current_phase in ("Succeeded", "Failed")
    initialized = all(c.state == "terminated" and c.exit_code == 0 for c in init)
    containers_ready = all(c.ready for c in main) and not terminal
    not_ready_reason = "PodCompleted" if current_phase == "Succeeded" else "PodFailed" if terminal else "ContainersNotReady"
    conditions = [c for c in old_status.get("conditions") or [] if c["type"] == "PodScheduled"]
    conditions += [
        _condition(previous, "PodReadyToStartContainers", not terminal),
        _condition(previous, "Initialized", initialized, "ContainersNotInitialized"),
        _condition(previous, "ContainersReady", containers_ready, not_ready_reason),
        _condition(previous, "Ready", containers_ready, not_ready_reason),
    ]
    status = {
        "phase": current_phase, "conditions": conditions, "hostIP": host_ip, "hostIPs": [{"ip": host_ip}],
        "podIP": pod_ip, "podIPs": [{"ip": pod_ip}], "startTime": start_time,
        "containerStatuses": [c.to_status() for c in main],
        "initContainerStatuses": [c.to_status() for c in init],
        "qosClass": old_status.get("qosClass") or "BestEffort",
        "message": message or None, "reason": reason or None,
    }
    return status
