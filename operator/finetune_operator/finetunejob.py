"""The FineTuneJob controller's logic: one level-triggered reconcile, safe to repeat at any time.

Each pass reads the job and its children (found by their fixed names), creates what is missing,
and writes the status that follows from what it saw. A restarted operator therefore continues
where the last one stopped, and never launches an attempt twice.

The pass, in order: finished jobs only wait for their TTL; cancel; the deadline; preflight
(Secret, GPU shape) and the validate-only pod; suspend/resume; then the attempt's Job (after
the namespace's caps admit it), its progress, and its outcome: success (verify the adapter's
sha256s, lineage, ModelVersion), a retry from the last checkpoint, or a permanent failure.
"""
from __future__ import annotations

import contextlib
import datetime
import json
import logging
import threading
import time
import urllib.request
from typing import Callable, Optional

from . import cleanup, kube, metrics, preflight, quota, status as st, storage
from .builders import names, trainer_config, trainer_job, validate_pod
from .builders.settings import OperatorSettings

log = logging.getLogger("finetune-operator")
GROUP, VERSION = "finetune.fto.dev", "v1alpha1"
Event = Callable[[str, str, str], None]  # (type Normal|Warning, reason, message)
_namespace_locks: dict = {}
_namespace_locks_guard = threading.Lock()


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _namespace_lock(namespace: str) -> threading.Lock:
    with _namespace_locks_guard:
        return _namespace_locks.setdefault(namespace, threading.Lock())


def _api_exception():
    from kubernetes.client.exceptions import ApiException
    return ApiException


class Reconciler:
    def __init__(self, obj: dict, patch_status: dict, event: Event, settings: OperatorSettings, runtime=None):
        self.obj, self.out, self.event, self.settings, self.runtime = obj, patch_status, event, settings, runtime
        self.meta, self.spec = obj["metadata"], obj["spec"]
        self.ns, self.name = self.meta["namespace"], self.meta["name"]
        self.status = obj.get("status") or {}
        self.conditions = list(self.status.get("conditions") or [])
        self.life = self.spec.get("lifecycle") or {}

    # --- status writing ------------------------------------------------------------------------
    def _set(self, **fields) -> None:
        self.out.update(fields)
        self.out["observedGeneration"] = self.meta.get("generation", 1)

    def _condition(self, ctype: str, ok: bool, reason: str, message: str) -> None:
        before = list(self.conditions)
        self.conditions = st.condition(self.conditions, ctype, ok, reason, message, self.meta.get("generation", 1),
                                       _now())
        if self.conditions != before:
            self.out["conditions"] = self.conditions
            self.out["observedGeneration"] = self.meta.get("generation", 1)

    def _phase(self, phase: str, reason: str, message: str, event_type: str = "Normal") -> None:
        if self.status.get("phase") != phase or self.status.get("reason") != reason:
            self.event(event_type, reason, message)
        if (self.status.get("phase"), self.status.get("reason"), self.status.get("message")) != (phase, reason,
                                                                                                  message):
            self._set(phase=phase, reason=reason, message=message)

    @property
    def phase(self) -> str:
        return self.out.get("phase") or self.status.get("phase") or "Pending"

    # --- the pass ------------------------------------------------------------------------------
    def reconcile(self) -> Optional[float]:
        finalizers = cleanup.finalizers_after(self.meta.get("finalizers") or [], self.spec)
        if finalizers is not None:  # the clean-up finalizer follows spec.lifecycle.cleanupOnDelete
            self._patch_finalizers(finalizers)
            return 0.2  # the object changed: decide the rest on the fresh one
        if not self.status.get("observedGeneration") and not self.status.get("phase"):
            self._phase("Pending", "Accepted", "accepted; checking the request")
        requeue = self._reconcile()
        if self.status.get("observedGeneration") != self.meta.get("generation", 1):
            self.out["observedGeneration"] = self.meta.get("generation", 1)
        metrics.JOBS.set((self.ns, self.name), namespace=self.ns, phase=self.phase)
        return requeue

    # --- deletion with spec.lifecycle.cleanupOnDelete ---------------------------------------------
    def finalize(self) -> Optional[float]:
        """The job is being deleted and carries our finalizer: stop its trainer pods, delete its S3
        output as asked, then let it go. A failed clean-up is retried; the job stays until it works
        or someone removes the finalizer (docs/operator.md says how)."""
        finalizers = self.meta.get("finalizers") or []
        if cleanup.FINALIZER not in finalizers:
            return None
        if self._stop_children_before_cleanup():
            return 2.0
        custom = kube.custom()
        versions = kube.raw(custom.list_namespaced_custom_object(GROUP, VERSION, self.ns, "modelversions",
                                                                 _preload_content=False))["items"]
        registered = [v["metadata"]["name"] for v in versions
                      if (((v.get("spec") or {}).get("adapter") or {}).get("fromJob") or {}).get("name") == self.name]
        try:
            plan = cleanup.plan(self.spec, self.status, registered)
            if plan.refused:
                self.event("Warning", "CleanupRefused", plan.refused)
            else:
                s3 = storage.client_for(kube.core(), self.ns, self.spec.get("credentials"))
                self.event("Normal", "OutputDeleted", cleanup.describe(plan, cleanup.delete_objects(s3, plan)))
        except Exception as err:  # noqa: BLE001 - S3 or credentials: say so, keep the finalizer, retry
            message = err.message if isinstance(err, storage.StorageError) else str(err)
            self.event("Warning", "CleanupFailed",
                       f"could not delete the job's S3 output ({message}); retrying in 30 s. To delete the job "
                       f"without clean-up, remove the finalizer {cleanup.FINALIZER}")
            return 30.0
        self._patch_finalizers([f for f in finalizers if f != cleanup.FINALIZER])
        return None

    def _stop_children_before_cleanup(self) -> bool:
        """True while trainer or validation pods may still write to the output prefix."""
        selector = "finetune.fto.dev/job=" + names.labels(self.name, "trainer")["finetune.fto.dev/job"]
        pods = kube.raw(kube.core().list_namespaced_pod(self.ns, label_selector=selector,
                                                        _preload_content=False))["items"]
        if not any((p.get("status") or {}).get("phase") not in ("Succeeded", "Failed") for p in pods):
            return False
        self._stop_trainer()
        return True

    def _patch_finalizers(self, finalizers: list[str]) -> None:
        if self.runtime:
            self.runtime.fence()
        # The resourceVersion makes it conditional: a finalizer list read stale is refused (409).
        kube.custom().patch_namespaced_custom_object(
            GROUP, VERSION, self.ns, "finetunejobs", self.name,
            {"metadata": {"finalizers": finalizers, "resourceVersion": self.meta["resourceVersion"]}})

    def _reconcile(self) -> Optional[float]:
        if self.status.get("phase") in st.TERMINAL:
            return self._after_finish()
        if self.life.get("cancel"):
            return self._cancel()
        left = st.deadline_left(self.spec, self.status.get("startTime"), time.time())
        if left is not None and left <= 0 and self.status.get("startTime"):
            return self._deadline_exceeded()
        attempt = int(self.status.get("attempts") or 1)
        core = kube.core()
        kube.create_or_get(lambda b, **k: core.create_namespaced_config_map(self.ns, b, **k),
                           lambda n, **k: core.read_namespaced_config_map(n, self.ns, **k),
                           trainer_config.config_map(self.obj, attempt, self.settings))
        if st.condition_status(self.conditions, st.VALIDATED) != "True":
            return self._validate()
        return self._train(attempt)

    # --- validation ----------------------------------------------------------------------------
    def _preflight(self) -> bool:
        """Checks only the cluster can answer, before the validate-only pod exists."""
        core = kube.core()
        creds = self.spec.get("credentials")
        try:
            if creds:
                secret = kube.read_or_none(lambda n, **k: core.read_namespaced_secret(n, self.ns, **k),
                                           creds["secretRef"]["name"])
                storage.credentials_from_secret(secret, creds)
        except storage.StorageError as err:
            self._condition(st.VALIDATED, False, err.reason, err.message)
            self._fail(err.reason, err.message)
            return False
        try:
            nodes = kube.raw(core.list_node(_preload_content=False))["items"]
        except _api_exception() as err:
            if err.status != 403:
                raise
            # A namespaced install (a Role, no ClusterRole) cannot see nodes: the scheduler judges alone.
            log.info("cannot list nodes (%s); skipping the GPU shape check", err.reason)
            return True
        misfit = preflight.gpu_fit(self.spec, nodes)
        if misfit:
            self._condition(st.VALIDATED, False, *misfit)
            self._fail(*misfit)
            return False
        return True

    def _validate(self) -> Optional[float]:
        core = kube.core()
        pod = kube.read_or_none(lambda n, **k: core.read_namespaced_pod(n, self.ns, **k),
                                names.child_name(self.name, "validate"))
        if pod is None:
            if not self._preflight():
                return None
            pod = kube.create_or_get(lambda b, **k: core.create_namespaced_pod(self.ns, b, **k),
                                     lambda n, **k: core.read_namespaced_pod(n, self.ns, **k),
                                     validate_pod.validate_pod(self.obj, self.settings))
        outcome = st.pod_outcome(pod)
        if self.status.get("validationPod") != pod["metadata"]["name"]:
            self._set(validationPod=pod["metadata"]["name"])
        if outcome.state == "succeeded":
            stats = (outcome.result or {}).get("datasetStats") or {}
            self._set(datasetStats={
                "rows": stats.get("rows", 0), "validationRows": stats.get("validation_rows", 0),
                "tokens": stats.get("tokens", 0), "rowsOverMaxSeqLength": stats.get("rows_over_max_seq_length", 0),
                "duplicateRows": stats.get("duplicate_rows", 0)})
            self._condition(st.VALIDATED, True, st.REASON_DATASET_VALID,
                            f"{stats.get('rows', '?')} training rows, {stats.get('tokens', '?')} tokens")
            self.event("Normal", st.REASON_DATASET_VALID, f"dataset valid: {stats.get('rows', '?')} rows")
            return self._train(int(self.status.get("attempts") or 1))
        if outcome.state == "failed":
            reason = outcome.reason or "ValidationFailed"
            self._condition(st.VALIDATED, False, reason, outcome.message)
            self._fail(reason, outcome.message)
            return None
        self._condition(st.VALIDATED, False, st.REASON_VALIDATING, "the validate-only pod is checking the dataset")
        self._phase("Validating", st.REASON_VALIDATING, "checking the dataset before any GPU is requested")
        return None  # the pod's watch events bring us back

    # --- training ------------------------------------------------------------------------------
    def _train(self, attempt: int) -> Optional[float]:
        batch, core = kube.batch(), kube.core()
        not_before = self.status.get("nextAttemptAfter")
        if not_before and time.time() < not_before:
            return not_before - time.time()
        job = kube.read_or_none(lambda n, **k: batch.read_namespaced_job(n, self.ns, **k),
                                trainer_job.job_name(self.name, attempt))
        suspend = bool(self.life.get("suspend"))
        if job is None:
            if suspend:
                return self._suspended(None)
            # The namespace lock spans the decision and the Job's creation: a second worker
            # deciding meanwhile would not yet see this Job and could take the same last slot.
            with self._capacity_lock():
                waiting = self._admit()
                if waiting is None:
                    job = self._launch(attempt)
            if waiting is not None:
                return waiting
        if (self.status.get("trainerJob"), self.status.get("attempts")) != (job["metadata"]["name"], attempt):
            self._set(trainerJob=job["metadata"]["name"], attempts=attempt)
        state = st.job_state(job)
        pods = kube.raw(core.list_namespaced_pod(
            self.ns, label_selector=f"batch.kubernetes.io/job-name={job['metadata']['name']}",
            _preload_content=False))["items"]
        self._account_gpu_seconds(pods, job)
        lead = min(pods, key=lambda p: int(p["metadata"].get("annotations", {}).get(
            "batch.kubernetes.io/job-completion-index", "0")), default=None)
        if state == "succeeded":
            return self._succeed(st.pod_outcome(lead))
        if state == "failed":
            return self._attempt_failed(attempt, st.pod_outcome(lead), st.job_failure_reason(job))
        if state == "finishing":  # keep the phase (Running) until the Job says how it ended
            return self._with_deadline(1.0)
        if suspend:
            return self._suspended(job)
        if state == "suspended" and not self._kueue_managed():
            return self._resume(job)
        running = state == "running" and any((p.get("status") or {}).get("phase") == "Running" for p in pods)
        if running and not self.status.get("startTime"):
            self._set(startTime=_now())
            created = st.parse_time(self.meta.get("creationTimestamp"))
            if created:
                metrics.JOB_START_LATENCY.observe(max(0.0, time.time() - created))
        if st.condition_status(self.conditions, st.SUSPENDED) == "True":
            self._condition(st.SUSPENDED, False, st.REASON_RESUMED, "not suspended")
        self._condition(st.RUNNING, running, st.REASON_TRAINING, f"attempt {attempt}")
        of = 1 + self.life.get("retryLimit", 3)
        if running:
            self._phase("Running", st.REASON_TRAINING, f"attempt {attempt} of {of} is running")
        elif state == "suspended":
            self._phase("Queued", "WaitingForKueue", f"attempt {attempt} waits for Kueue to admit it "
                                                     f"(queue {self.spec['resources'].get('queueName')})")
        else:
            self._phase("Queued", st.REASON_TRAINING, f"attempt {attempt} of {of} is waiting for its pods")
        if lead and (lead.get("status") or {}).get("podIP") and running:
            self._poll_progress(lead["status"]["podIP"])
            return self._with_deadline(self.settings.progress_interval_seconds)
        return self._with_deadline(None)

    def _with_deadline(self, requeue: Optional[float]) -> Optional[float]:
        left = st.deadline_left(self.spec, self.status.get("startTime") or self.out.get("startTime"), time.time())
        if left is None:
            return requeue
        return max(0.5, left) if requeue is None else min(requeue, max(0.5, left))

    def _kueue_managed(self) -> bool:
        return bool((self.spec.get("resources") or {}).get("queueName"))

    def _launch(self, attempt: int) -> dict:
        batch, core = kube.batch(), kube.core()
        if (self.spec.get("resources") or {}).get("nodes", 1) > 1:
            kube.create_or_get(lambda b, **k: core.create_namespaced_service(self.ns, b, **k),
                               lambda n, **k: core.read_namespaced_service(n, self.ns, **k),
                               trainer_job.headless_service(self.obj, attempt, self.settings))
        left = st.deadline_left(self.spec, self.status.get("startTime"), time.time())
        body = trainer_job.trainer_job(self.obj, attempt, self.settings,
                                       deadline_left=int(left) if left is not None else None)
        job = kube.create_or_get(lambda b, **k: batch.create_namespaced_job(self.ns, b, **k),
                                 lambda n, **k: batch.read_namespaced_job(n, self.ns, **k), body)
        if attempt == 1:
            self.event("Normal", "TrainerLaunched", f"created Job {job['metadata']['name']}")
        else:
            self.event("Normal", "TrainerRelaunched",
                       f"created Job {job['metadata']['name']} (attempt {attempt}, resumes from the last checkpoint)")
        return job

    def _capacity_lock(self):
        s = self.settings
        if s.max_running_jobs_per_namespace is None and s.max_gpus_per_namespace is None:
            return contextlib.nullcontext()
        return _namespace_lock(self.ns)  # per process: only the leader replica decides

    def _admit(self) -> Optional[float]:
        """None if the trainer may start now; else seconds until asking again (phase Queued).
        Call it holding _capacity_lock() until the Job is created."""
        s = self.settings
        if s.max_running_jobs_per_namespace is None and s.max_gpus_per_namespace is None:
            return None
        batch, custom = kube.batch(), kube.custom()
        jobs = kube.raw(batch.list_namespaced_job(
            self.ns, label_selector=f"app.kubernetes.io/managed-by={names.MANAGED_BY},"
                                    f"app.kubernetes.io/component=trainer", _preload_content=False))["items"]
        holding = [j for j in jobs if quota.job_holds_capacity(j)]
        started = {j["metadata"]["name"] for j in jobs}
        waiting = []
        for other in kube.raw(custom.list_namespaced_custom_object(
                GROUP, VERSION, self.ns, "finetunejobs", _preload_content=False))["items"]:
            ostatus = other.get("status") or {}
            olife = other["spec"].get("lifecycle") or {}
            if ostatus.get("phase") in st.TERMINAL or olife.get("suspend") or olife.get("cancel"):
                continue
            if st.condition_status(ostatus.get("conditions"), st.VALIDATED) != "True" and \
                    other["metadata"]["name"] != self.name:
                continue
            if trainer_job.job_name(other["metadata"]["name"], int(ostatus.get("attempts") or 1)) in started:
                continue
            waiting.append(quota.demand_of(other))
        decision = quota.decide(quota.demand_of(self.obj), waiting, len(holding),
                                sum(quota.job_gpus(j) for j in holding),
                                s.max_running_jobs_per_namespace, s.max_gpus_per_namespace)
        if decision.admitted:
            return None
        self._condition(st.RUNNING, False, st.REASON_WAITING_FOR_CAPACITY, decision.message)
        self._phase("Queued", st.REASON_WAITING_FOR_CAPACITY, decision.message)
        return 5.0

    def _account_gpu_seconds(self, pods: list, job: dict) -> None:
        gpus = quota.job_gpus(job) // max(1, int((job.get("spec") or {}).get("parallelism") or 1))
        if not gpus or not pods:
            return
        now = time.time()
        since = st.parse_time(self.status.get("gpuSecondsUpdatedAt"))
        delta = st.gpu_seconds_since(pods, gpus, since, now)
        if delta <= 0:
            return
        total = float(self.status.get("gpuSeconds") or 0) + delta
        self._set(gpuSeconds=round(total, 1), gpuSecondsUpdatedAt=_now())
        metrics.GPU_SECONDS.labels(self.ns).inc(delta)

    def _poll_progress(self, ip: str) -> None:
        try:
            with urllib.request.urlopen(f"http://{ip}:{self.settings.metrics_port}/progress", timeout=1) as resp:
                doc = json.loads(resp.read())
        except (OSError, ValueError):
            return  # not serving yet; the next pass tries again
        if doc.get("totalSteps"):
            progress = st.progress_from(doc)
            old = self.status.get("progress") or {}
            progress["history"] = st.append_history(old.get("history") or [], progress)
            self._set(progress=progress)
        if doc.get("checkpoints"):
            self._set(checkpoints=[{k: c[k] for k in ("step", "uri", "evalLoss", "savedAt") if c.get(k) is not None}
                                   for c in doc["checkpoints"]])

    # --- suspend / resume ----------------------------------------------------------------------
    def _suspended(self, job: Optional[dict]) -> Optional[float]:
        if job is not None and not (job.get("spec") or {}).get("suspend"):
            # The Job controller deletes the pods; SIGTERM makes the trainer save a checkpoint
            # within terminationGracePeriodSeconds, and resuming continues from it.
            kube.batch().patch_namespaced_job(job["metadata"]["name"], self.ns, {"spec": {"suspend": True}})
        self._condition(st.RUNNING, False, st.REASON_SUSPENDED, "suspended")
        self._condition(st.SUSPENDED, True, st.REASON_SUSPENDED, "spec.lifecycle.suspend is true")
        self._phase("Suspended", st.REASON_SUSPENDED,
                    "suspended by spec.lifecycle.suspend: the trainer checkpointed and stopped; set it to false to "
                    "resume from the checkpoint")
        return None

    def _resume(self, job: dict) -> Optional[float]:
        waiting = self._admit()
        if waiting is not None:
            return waiting
        kube.batch().patch_namespaced_job(job["metadata"]["name"], self.ns, {"spec": {"suspend": False}})
        self._condition(st.SUSPENDED, False, st.REASON_RESUMED, "spec.lifecycle.suspend is false")
        self._phase("Queued", st.REASON_RESUMED, "resumed: the trainer restarts from the last checkpoint")
        return None

    # --- outcomes ------------------------------------------------------------------------------
    def _succeed(self, outcome: st.PodOutcome) -> Optional[float]:
        result = outcome.result or {}
        if not result.get("manifestUri"):
            return self._fail("ResultMissing", "the trainer exited 0 without reporting its result "
                                               "(no manifestUri in its termination message)")
        try:
            s3 = storage.client_for(kube.core(), self.ns, self.spec.get("credentials"))
            verified = storage.verify_manifest(s3, result["manifestUri"], result.get("adapterDigest"))
        except storage.StorageError as err:
            if err.reason == "S3Unavailable":
                self._condition(st.SUCCEEDED, False, "VerifyingAdapter", f"retrying: {err.message}")
                return 10.0
            return self._fail(err.reason, f"the trained adapter failed verification: {err.message}")
        manifest = verified.manifest
        metrics_ = {k: v for k, v in (manifest.get("metrics") or result.get("metrics") or {}).items()
                    if isinstance(v, (int, float))}
        self._set(result={"adapterUri": result.get("adapterUri") or verified.adapter_uri,
                          "manifestUri": result["manifestUri"], "adapterDigest": verified.digest,
                          "metrics": metrics_, "steps": manifest.get("steps", result.get("steps")),
                          "tokens": manifest.get("tokens"), "wallSeconds": manifest.get("wallSeconds")},
                  lineage={k: v for k, v in {
                      "datasetUri": (manifest.get("dataset") or {}).get("uri") or self.spec["dataset"]["uri"],
                      "datasetEtag": (manifest.get("dataset") or {}).get("etag"),
                      "baseModelDigest": (manifest.get("baseModel") or {}).get("digest"),
                      "configHash": manifest.get("configHash"),
                      "trainerImage": manifest.get("trainerImage") or self.settings.trainer_image}.items() if v},
                  completionTime=_now())
        steps = manifest.get("steps", result.get("steps"))
        if self.status.get("progress"):
            progress = dict(self.status["progress"], step=steps, percent=100)
            progress["display"] = f"{steps}/{progress.get('totalSteps', steps)}"
            self._set(progress=progress)
        self._condition(st.RUNNING, False, st.REASON_TRAINED, "training finished")
        self._condition(st.SUCCEEDED, True, st.REASON_TRAINED,
                        f"adapter at {result.get('adapterUri')}; {len(verified.files)} files verified")
        registered = self._register_model_version(result)
        self._phase("Succeeded", st.REASON_TRAINED,
                    f"adapter written to {result.get('adapterUri')} and verified" +
                    (f"; ModelVersion {registered}" if registered else ""))
        self._wake_waiting()
        return self._after_finish(just_finished=True)

    def _register_model_version(self, result: dict):
        wanted = (self.spec.get("output") or {}).get("registerModelVersion")
        if not wanted:
            return None
        version = wanted.get("version") or self.name
        body = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "ModelVersion",
                "metadata": {"name": names.child_name(wanted["model"], version), "namespace": self.ns,
                             "labels": {"finetune.fto.dev/model": wanted["model"],
                                        "finetune.fto.dev/job": self.name[:names.MAX_NAME]}},
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
        if self.runtime is not None:  # it waits for this job's Succeeded status, written after this pass
            self.runtime.enqueue("modelversions", self.ns, body["metadata"]["name"], delay=1.0)
        return body["metadata"]["name"]

    def _attempt_failed(self, attempt: int, outcome: st.PodOutcome, job_reason: str) -> Optional[float]:
        reason = outcome.reason or job_reason
        message = outcome.message or f"the trainer Job failed ({job_reason})"
        if job_reason == "DeadlineExceeded":
            reason, message = st.REASON_DEADLINE, (f"spec.lifecycle.activeDeadlineSeconds "
                                                   f"({self.life.get('activeDeadlineSeconds')}s) passed")
        retry_limit = self.life.get("retryLimit", 3)
        retryable = outcome.retryable and reason != st.REASON_DEADLINE
        split = None
        if reason == st.REASON_OUT_OF_MEMORY:
            # The same batch would run out of memory again: relaunch only with a smaller micro-batch.
            current = int(self.status.get("microBatchSplit") or 1)
            split = st.out_of_memory_split(self.life.get("onOutOfMemory"), current,
                                           int((self.spec.get("training") or {}).get("batchSize", 1)))
            retryable = split is not None
            if split is None:
                message += (" (spec.lifecycle.onOutOfMemory.action is Fail)"
                            if (self.life.get("onOutOfMemory") or {}).get("action", "Fail") == "Fail"
                            else f" (micro-batches were already split in {current}, the most allowed)")
        failure = {"reason": reason, "message": message[:4000], "retryable": retryable and attempt <= retry_limit}
        if {k: (self.status.get("lastFailure") or {}).get(k) for k in failure} != failure:
            self._set(lastFailure={**failure, "time": _now()})
        if not retryable:
            return self._fail(reason, message)
        if attempt > retry_limit:
            return self._fail(st.REASON_RETRIES_EXHAUSTED, f"{attempt} attempts failed; last: {reason}: {message}")
        delay = st.retry_delay(attempt)
        self._set(attempts=attempt + 1, nextAttemptAfter=int(time.time() + delay))
        if split is not None:
            self._set(microBatchSplit=split)
            self.event("Normal", "MicroBatchSplit", f"out of memory: attempt {attempt + 1} splits each micro-batch "
                                                    f"in {split} (same steps, same gradients, less memory)")
        metrics.JOB_RETRIES.labels(self.ns).inc()
        self._condition(st.RUNNING, False, st.REASON_RETRYING, f"attempt {attempt} failed: {reason}")
        self._phase("Queued", st.REASON_RETRYING,
                    f"attempt {attempt} failed ({reason}); attempt {attempt + 1} resumes from the last checkpoint "
                    f"in {delay:.0f}s", "Warning")
        self._wake_waiting()
        return delay

    def _deadline_exceeded(self) -> Optional[float]:
        self._stop_trainer()
        return self._fail(st.REASON_DEADLINE, f"spec.lifecycle.activeDeadlineSeconds "
                                              f"({self.life.get('activeDeadlineSeconds')}s) passed since training "
                                              f"started at {self.status.get('startTime')}")

    def _fail(self, reason: str, message: str) -> Optional[float]:
        if st.condition_status(self.conditions, st.RUNNING) == "True":
            self._condition(st.RUNNING, False, reason, message)
        self._condition(st.SUCCEEDED, False, reason, message)
        self._set(completionTime=_now())
        self._phase("Failed", reason, message, "Warning")
        metrics.JOB_FAILURES.labels(self.ns, reason).inc()
        self._wake_waiting()
        return self._after_finish(just_finished=True)

    def _cancel(self) -> Optional[float]:
        self._stop_trainer()
        self._condition(st.RUNNING, False, st.REASON_CANCELLED, "cancelled")
        self._condition(st.SUCCEEDED, False, st.REASON_CANCELLED, "spec.lifecycle.cancel is true")
        self._set(completionTime=_now())
        self._phase("Cancelled", st.REASON_CANCELLED, "cancelled by spec.lifecycle.cancel; checkpoints are kept")
        self._wake_waiting()
        return self._after_finish(just_finished=True)

    def _stop_trainer(self) -> None:
        """Deletes the current attempt's Job (its pods get SIGTERM and checkpoint) and the validate pod."""
        ApiException = _api_exception()
        attempt = int(self.status.get("attempts") or 1)
        for delete in (lambda: kube.batch().delete_namespaced_job(trainer_job.job_name(self.name, attempt), self.ns,
                                                                   propagation_policy="Background"),
                       lambda: kube.core().delete_namespaced_pod(names.child_name(self.name, "validate"), self.ns)):
            try:
                delete()
            except ApiException as err:
                if err.status != 404:
                    raise

    def _wake_waiting(self) -> None:
        """Capacity may have freed up: let jobs queued behind the caps look again."""
        if self.runtime is not None and (self.settings.max_running_jobs_per_namespace is not None or
                                         self.settings.max_gpus_per_namespace is not None):
            self.runtime.enqueue_namespace("finetunejobs", self.ns)

    # --- after the end -------------------------------------------------------------------------
    def _after_finish(self, just_finished: bool = False) -> Optional[float]:
        """TTL: delete the children (Jobs, pods, Services, ConfigMap); the FineTuneJob and its status stay."""
        if self.status.get("childrenDeletedAt"):
            return None
        completion = self.out.get("completionTime") or self.status.get("completionTime")
        left = st.ttl_left(self.spec, completion, time.time())
        if left is None:
            return None
        if left > 0:
            return left
        self._delete_children()
        self._set(childrenDeletedAt=_now())
        self.event("Normal", st.REASON_CLEANED_UP,
                   f"spec.lifecycle.ttlSecondsAfterFinished ({self.life['ttlSecondsAfterFinished']}s) passed: "
                   "deleted the trainer Jobs, pods, Services and ConfigMap; this FineTuneJob and its status stay")
        return None

    def _delete_children(self) -> None:
        ApiException = _api_exception()
        batch, core = kube.batch(), kube.core()
        selector = f"finetune.fto.dev/job={self.name[:names.MAX_NAME]},app.kubernetes.io/managed-by={names.MANAGED_BY}"
        owned = lambda o: any(r.get("uid") == self.meta["uid"] for r in o["metadata"].get("ownerReferences") or [])
        for job in kube.raw(batch.list_namespaced_job(self.ns, label_selector=selector,
                                                      _preload_content=False))["items"]:
            if owned(job):
                batch.delete_namespaced_job(job["metadata"]["name"], self.ns, propagation_policy="Background")
        for svc in kube.raw(core.list_namespaced_service(self.ns, label_selector=selector,
                                                         _preload_content=False))["items"]:
            if owned(svc):
                core.delete_namespaced_service(svc["metadata"]["name"], self.ns)
        for delete in (lambda: core.delete_namespaced_pod(names.child_name(self.name, "validate"), self.ns),
                       lambda: core.delete_namespaced_config_map(names.child_name(self.name, "config"), self.ns)):
            try:
                delete()
            except ApiException as err:
                if err.status != 404:
                    raise
