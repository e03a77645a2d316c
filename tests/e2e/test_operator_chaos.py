"""SIGKILL the operator at random moments while 20 FineTuneJobs run their course on kwok nodes.

Afterwards every job must be in its correct terminal phase, no Job may have been created twice
(watched by UID from outside the operator), and no status may have gone backwards.
"""
from __future__ import annotations

import json
import random
import threading
import time

from kubernetes import client, watch

from fakejobs import GROUP, KWOK_SETTINGS, VERSION, finetunejob, setup_namespace, status, upload_result
from operator_process import OperatorProcess

RANK = {None: 0, "Pending": 0, "Validating": 1, "Queued": 2, "Running": 2, "Suspended": 2,
        "Succeeded": 3, "Failed": 3, "Cancelled": 3}


class Recorder:
    """Watches Jobs and FineTuneJobs of the namespace from the test's side."""

    def __init__(self, api, namespace: str):
        self.api, self.namespace = api, namespace
        self.job_uids: dict = {}        # Job name -> set of UIDs seen
        self.history: dict = {}         # FineTuneJob -> [(phase, attempts, validated)]
        self._stop = threading.Event()
        self.threads = [threading.Thread(target=self._watch_jobs, daemon=True),
                        threading.Thread(target=self._watch_ftjs, daemon=True)]

    def start(self):
        for t in self.threads:
            t.start()
        return self

    def stop(self):
        self._stop.set()

    def _stream(self, fn, *args):
        while not self._stop.is_set():
            w = watch.Watch()
            try:
                for event in w.stream(fn, *args, timeout_seconds=5):
                    yield event
                    if self._stop.is_set():
                        break
            except Exception:  # noqa: BLE001 - re-watch
                time.sleep(0.2)

    def _watch_jobs(self):
        batch = client.BatchV1Api(self.api)
        for event in self._stream(batch.list_namespaced_job, self.namespace):
            meta = event["object"].metadata
            self.job_uids.setdefault(meta.name, set()).add(meta.uid)

    def _watch_ftjs(self):
        custom = client.CustomObjectsApi(self.api)
        for event in self._stream(custom.list_namespaced_custom_object, GROUP, VERSION, self.namespace,
                                  "finetunejobs"):
            obj = event["object"]
            s = obj.get("status") or {}
            validated = next((c["status"] for c in s.get("conditions") or [] if c["type"] == "Validated"), None)
            self.history.setdefault(obj["metadata"]["name"], []).append(
                (s.get("phase"), s.get("attempts") or 0, validated))


def test_sigkill_at_random_points_loses_nothing_and_duplicates_nothing(cluster, api, crds, core, s3, namespace,
                                                                       tmp_path):
    bucket = setup_namespace(core, s3, namespace)
    rng = random.Random(20)
    expected = {}
    recorder = Recorder(api, namespace).start()
    for i in range(20):
        name = f"job-{i:02d}"
        kind = ("succeed", "succeed", "diverge", "retry-out")[i % 4]
        if kind == "succeed":
            body = finetunejob(cluster, bucket, name, result=upload_result(s3, bucket, name),
                               duration=f"{rng.randint(1, 6)}s")
            expected[name] = ("Succeeded", "Trained", 1)
        elif kind == "diverge":
            body = finetunejob(cluster, bucket, name, duration=f"{rng.randint(1, 4)}s", trainer={
                "fto.dev/fake-exit-code": "14"}, result={"reason": "Diverged", "exitCode": 14, "retryable": False,
                                                          "message": "loss became NaN"})
            expected[name] = ("Failed", "Diverged", 1)
        else:
            body = finetunejob(cluster, bucket, name, duration=f"{rng.randint(1, 3)}s", retryLimit=1,
                               trainer={"fto.dev/fake-exit-code": "143"})
            expected[name] = ("Failed", "RetryLimitExceeded", 2)
        crds.create_namespaced_custom_object(GROUP, VERSION, namespace, "finetunejobs", body)

    operator = OperatorProcess(cluster, [namespace], tmp_path / "operator.log", env=KWOK_SETTINGS)
    kills, deadline = 0, time.monotonic() + 300
    try:
        while time.monotonic() < deadline:
            operator.start()
            time.sleep(rng.uniform(0.5, 4.0))
            done = all(status(crds, namespace, n).get("phase") in ("Succeeded", "Failed", "Cancelled")
                       for n in expected)
            if done:
                break
            operator.kill()
            kills += 1
        else:
            raise AssertionError("jobs did not finish in 300s:\n" + operator.log()[-3000:])
    finally:
        operator.stop()
        time.sleep(1)
        recorder.stop()

    assert kills >= 5, f"only {kills} kills happened; the test did not exercise restarts"
    for name, (phase, reason, attempts) in expected.items():
        s = status(crds, namespace, name)
        assert (s.get("phase"), s.get("reason"), s.get("attempts")) == (phase, reason, attempts), (name, s)
    twice = {job: uids for job, uids in recorder.job_uids.items() if len(uids) > 1}
    assert not twice, f"Jobs created more than once: {twice}"
    expected_jobs = {f"{n}-train-{a}" for n, (_, _, attempts) in expected.items() for a in range(1, attempts + 1)}
    assert set(recorder.job_uids) == expected_jobs
    for name, seen in recorder.history.items():
        ranks = [RANK[p] for p, _, _ in seen]
        assert ranks == sorted(ranks), f"{name}'s phase went backwards: {[p for p, _, _ in seen]}"
        attempts = [a for _, a, _ in seen]
        assert attempts == sorted(attempts), f"{name}'s attempts went backwards: {attempts}"
        validated = [v for _, _, v in seen if v is not None]
        assert "True" not in validated or validated[validated.index("True"):] == ["True"] * (
            len(validated) - validated.index("True")), f"{name}: Validated went from True back to False"
    print(json.dumps({"kills": kills, "jobs": len(expected), "jobsCreated": len(recorder.job_uids)}))
