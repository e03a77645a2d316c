"""The FineTuneJob controller's logic: one level-triggered reconcile, safe to repeat at any time.

Each pass reads the job and its children (found by their fixed names), creates what is missing,
and writes the status that follows from what it saw. A restarted operator therefore continues
where the last one stopped, and never launches an attempt twice.

Implemented so far: validation by the validate-only pod, one Job per attempt with retries of
retryable failures (exponential backoff, resume from checkpoint), progress from the trainer's
/progress endpoint, the result and lineage from its termination message, cancel, and the
ModelVersion the spec asks for. Not yet: suspend/resume, TTL clean-up, quotas, metrics.
"""
from __future__ import annotations

import datetime
import json
import logging
import time
import urllib.request
from typing import Callable

from . import kube, status as st
from .builders import names, trainer_config, trainer_job, validate_pod
from .builders.settings import OperatorSettings

log = logging.getLogger("finetune-operator")
GROUP, VERSION = "finetune.fto.dev", "v1alpha1"
Event = Callable[[str, str, str], None]  # (type Normal|Warning, reason, message)


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class Reconciler:
    def __init__(self, obj: dict, patch_status: dict, event: Event, settings: OperatorSettings):
        self.obj, self.out, self.event, self.settings = obj, patch_status, event, settings
        self.meta, self.spec = obj["metadata"], obj["spec"]
        self.ns, self.name = self.meta["namespace"], self.meta["name"]
        self.status = obj.get("status") or {}
        self.conditions = list(self.status.get("conditions") or [])

    # --- status writing ------------------------------------------------------------------------
    def _set(self, **fields) -> None:
        self.out.update(fields)
        self.out["observedGeneration"] = self.meta.get("generation", 1)

    def _condition(self, ctype: str, ok: bool, reason: str, message: str) -> None:
        self.conditions = st.condition(self.conditions, ctype, ok, reason, message, self.meta.get("generation", 1),
                                       _now())
        self.out["conditions"] = self.conditions

    def _phase(self, phase: str, reason: str, message: str, event_type: str = "Normal") -> None:
        if self.status.get("phase") != phase or self.status.get("reason") != reason:
            self.event(event_type, reason, message)
        self._set(phase=phase, reason=reason, message=message)

    # --- the pass ------------------------------------------------------------------------------
    def reconcile(self) -> None:
        if self.status.get("phase") in st.TERMINAL:
            return
        if (self.spec.get("lifecycle") or {}).get("cancel"):
            return self._cancel()
        attempt = int(self.status.get("attempts") or 1)
        core = kube.core()
        kube.create_or_get(lambda b, **k: core.create_namespaced_config_map(self.ns, b, **k),
                           lambda n, **k: core.read_namespaced_config_map(n, self.ns, **k),
                           trainer_config.config_map(self.obj, attempt, self.settings))
        if st.condition_status(self.conditions, st.VALIDATED) != "True":
            if not self._validate():
                return
        self._train(attempt)

    def _validate(self) -> bool:
        core = kube.core()
        pod = kube.create_or_get(lambda b, **k: core.create_namespaced_pod(self.ns, b, **k),
                                 lambda n, **k: core.read_namespaced_pod(n, self.ns, **k),
                                 validate_pod.validate_pod(self.obj, self.settings))
        outcome = st.pod_outcome(pod)
        self._set(validationPod=pod["metadata"]["name"])
        if outcome.state == "succeeded":
            stats = (outcome.result or {}).get("datasetStats") or {}
            self._set(datasetStats={
                "rows": stats.get("rows", 0), "validationRows": stats.get("validation_rows", 0),
                "tokens": stats.get("tokens", 0), "rowsOverMaxSeqLength": stats.get("rows_over_max_seq_length", 0),
                "duplicateRows": stats.get("duplicate_rows", 0)})
            self._condition(st.VALIDATED, True, st.REASON_DATASET_VALID,
                            f"{stats.get('rows', '?')} training rows, {stats.get('tokens', '?')} tokens")
            return True
        if outcome.state == "failed":
            reason = outcome.reason or "ValidationFailed"
            self._condition(st.VALIDATED, False, reason, outcome.message)
            self._fail(reason, outcome.message)
            return False
        self._condition(st.VALIDATED, False, st.REASON_VALIDATING, "the validate-only pod is checking the dataset")
        self._phase("Validating", st.REASON_VALIDATING, "checking the dataset before any GPU is requested")
        return False

    def _train(self, attempt: int) -> None:
        batch, core = kube.batch(), kube.core()
        not_before = self.status.get("nextAttemptAfter")
        if not_before and time.time() < not_before:
            return
        if (self.spec.get("resources") or {}).get("nodes", 1) > 1:
            kube.create_or_get(lambda b, **k: core.create_namespaced_service(self.ns, b, **k),
                               lambda n, **k: core.read_namespaced_service(n, self.ns, **k),
                               trainer_job.headless_service(self.obj, attempt, self.settings))
        job = kube.create_or_get(lambda b, **k: batch.create_namespaced_job(self.ns, b, **k),
                                 lambda n, **k: batch.read_namespaced_job(n, self.ns, **k),
                                 trainer_job.trainer_job(self.obj, attempt, self.settings))
        self._set(trainerJob=job["metadata"]["name"], attempts=attempt)
        state = st.job_state(job)
        pods = kube.raw(core.list_namespaced_pod(
            self.ns, label_selector=f"batch.kubernetes.io/job-name={job['metadata']['name']}",
            _preload_content=False))["items"]
        lead = min(pods, key=lambda p: p["metadata"].get("annotations", {}).get(
            "batch.kubernetes.io/job-completion-index", "0"), default=None)
        if state == "succeeded":
            return self._succeed(st.pod_outcome(lead))
        if state == "failed":
            outcome = st.pod_outcome(lead)
            return self._attempt_failed(attempt, outcome, st.job_failure_reason(job))
        if not self.status.get("startTime") and state == "running":
            self._set(startTime=_now())
        self._condition(st.RUNNING, state == "running", st.REASON_TRAINING, f"attempt {attempt}")
        of = 1 + (self.spec.get("lifecycle") or {}).get("retryLimit", 3)
        if state == "running":
            self._phase("Running", st.REASON_TRAINING, f"attempt {attempt} of {of} is running")
        else:
            self._phase("Queued", st.REASON_TRAINING, f"attempt {attempt} of {of} is waiting for its pods")
        if lead and (lead.get("status") or {}).get("podIP") and state == "running":
            self._poll_progress(lead["status"]["podIP"])

    def _poll_progress(self, ip: str) -> None:
        try:
            with urllib.request.urlopen(f"http://{ip}:{self.settings.metrics_port}/progress", timeout=1) as resp:
                doc = json.loads(resp.read())
        except (OSError, ValueError):
            return  # not serving yet; the next pass tries again
        if doc.get("totalSteps"):
            self._set(progress=st.progress_from(doc))
        if doc.get("checkpoints"):
            self._set(checkpoints=[{k: c[k] for k in ("step", "uri", "evalLoss", "savedAt") if c.get(k) is not None}
                                   for c in doc["checkpoints"]])

    def _succeed(self, outcome: st.PodOutcome) -> None:
        result = outcome.result or {}
        metrics = {k: v for k, v in (result.get("metrics") or {}).items() if isinstance(v, (int, float))}
        self._set(result={"adapterUri": result.get("adapterUri"), "manifestUri": result.get("manifestUri"),
                          "adapterDigest": result.get("adapterDigest"), "metrics": metrics,
                          "steps": result.get("steps")},
                  lineage={"datasetUri": self.spec["dataset"]["uri"], "trainerImage": self.settings.trainer_image},
                  completionTime=_now())
        if self.status.get("progress"):
            progress = dict(self.status["progress"], step=result.get("steps"), percent=100)
            progress["display"] = f"{result.get('steps')}/{progress.get('totalSteps', result.get('steps'))}"
            self._set(progress=progress)
        self._condition(st.RUNNING, False, st.REASON_TRAINED, "training finished")
        self._condition(st.SUCCEEDED, True, st.REASON_TRAINED, f"adapter at {result.get('adapterUri')}")
        registered = self._register_model_version(result)
        self._phase("Succeeded", st.REASON_TRAINED,
                    f"adapter written to {result.get('adapterUri')}" + (f"; ModelVersion {registered}" if registered else ""))

    def _register_model_version(self, result: dict):
        wanted = (self.spec.get("output") or {}).get("registerModelVersion")
        if not wanted:
            return None
        version = wanted.get("version") or self.name
        body = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "ModelVersion",
                "metadata": {"name": names.child_name(wanted["model"], version), "namespace": self.ns,
                             "labels": {"finetune.fto.dev/model": wanted["model"], "finetune.fto.dev/job": self.name}},
                # Not owned by the job: deleting a finished job must not delete a served model's record.
                "spec": {"model": wanted["model"], "version": version, "adapter": {"fromJob": {"name": self.name}},
                         "baseModel": {"name": self.spec["baseModel"]["name"]},
                         "stage": wanted.get("stage", "candidate")}}
        for key in ("servingTarget", "gates"):
            if wanted.get(key):
                body["spec"][key] = wanted[key]
        if self.spec.get("credentials"):
            body["spec"]["credentials"] = self.spec["credentials"]
        custom = kube.custom()
        kube.create_or_get(
            lambda b, **k: custom.create_namespaced_custom_object(GROUP, VERSION, self.ns, "modelversions", b, **k),
            lambda n, **k: custom.get_namespaced_custom_object(GROUP, VERSION, self.ns, "modelversions", n, **k), body)
        self._set(modelVersion=body["metadata"]["name"])
        return body["metadata"]["name"]

    def _attempt_failed(self, attempt: int, outcome: st.PodOutcome, job_reason: str) -> None:
        reason = outcome.reason or job_reason
        message = outcome.message or f"the trainer Job failed ({job_reason})"
        retry_limit = (self.spec.get("lifecycle") or {}).get("retryLimit", 3)
        self._set(lastFailure={"reason": reason, "message": message[:4000], "retryable": outcome.retryable,
                               "time": _now()})
        if job_reason == "DeadlineExceeded" or not outcome.retryable:
            return self._fail(reason, message)
        if attempt > retry_limit:
            return self._fail(st.REASON_RETRIES_EXHAUSTED, f"{attempt} attempts failed; last: {reason}: {message}")
        delay = st.retry_delay(attempt)
        self._set(attempts=attempt + 1, nextAttemptAfter=int(time.time() + delay))
        self._phase("Queued", st.REASON_RETRYING,
                    f"attempt {attempt} failed ({reason}); attempt {attempt + 1} resumes from the last checkpoint "
                    f"in {delay:.0f}s", "Warning")

    def _fail(self, reason: str, message: str) -> None:
        self._condition(st.SUCCEEDED, False, reason, message)
        self._set(completionTime=_now())
        self._phase("Failed", reason, message, "Warning")

    def _cancel(self) -> None:
        batch = kube.batch()
        attempt = int(self.status.get("attempts") or 1)
        from kubernetes.client.exceptions import ApiException
        try:  # stop the pods (SIGTERM: the trainer checkpoints), keep the FineTuneJob and its checkpoints
            batch.delete_namespaced_job(trainer_job.job_name(self.name, attempt), self.ns,
                                        propagation_policy="Background")
        except ApiException as err:
            if err.status != 404:
                raise
        self._condition(st.SUCCEEDED, False, st.REASON_CANCELLED, "spec.lifecycle.cancel is true")
        self._set(completionTime=_now())
        self._phase("Cancelled", st.REASON_CANCELLED, "cancelled by spec.lifecycle.cancel; checkpoints are kept")
