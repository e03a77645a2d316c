"""The apiserver's limit for the operator's per-job object work: a bare client with no reconcile logic.

For every FineTuneJob in one namespace it creates the validate-only pod (the operator's own builder,
so the same pod on the same kwok node), waits for that pod to succeed by watch (kwok's Stages
complete it, as they do the operator's), then creates attempt 1's trainer Job (the operator's
builder again). No status writes, no ConfigMap, no Events, no preflight reads: what is left is the
least work any controller must do per job, on `--threads` threads fed by two watches.
operator_scale.py runs it as a subprocess, in the same way and on the same cluster as the operator,
and measures both from outside.

It prints `ready` once its watches are listening, and a JSON line of its counters when it gets
SIGTERM.

usage: KUBECONFIG=... python bench/bare_client.py --namespace NS [--threads 4]
"""
from __future__ import annotations

import argparse
import json
import queue
import signal
import sys
import threading
import time

VALIDATE_SELECTOR = "app.kubernetes.io/component=validate"
FINETUNEJOB_ANNOTATION = "finetune.fto.dev/finetunejob"
GROUP, VERSION = "finetune.fto.dev", "v1alpha1"


def watch_raw(list_fn, on_event, stop: threading.Event, on_listed=None, **params) -> None:
    """List, then watch from the list's resourceVersion, as plain dicts; relist when the watch expires.

    on_event(type, obj) sees every listed item as ADDED. An overloaded apiserver answers 410 or 5xx:
    list and watch again (the handlers must be idempotent, which create-by-name is)."""
    from kubernetes.client.exceptions import ApiException
    from kubernetes.watch.watch import iter_resp_lines

    while not stop.is_set():
        try:
            listed = json.loads(list_fn(_preload_content=False, **params).data)
            for item in listed["items"]:
                on_event("ADDED", item)
            if on_listed:
                on_listed()
                on_listed = None
            rv = listed["metadata"]["resourceVersion"]
            while not stop.is_set():
                resp = list_fn(watch=True, resource_version=rv, allow_watch_bookmarks=True, timeout_seconds=120,
                               _preload_content=False, **params)
                try:
                    for line in iter_resp_lines(resp):
                        event = json.loads(line) if line else None
                        if not event:
                            continue
                        if event["type"] == "ERROR":
                            raise ApiException(status=event["object"].get("code"), reason="watch error")
                        rv = event["object"]["metadata"].get("resourceVersion", rv)
                        if event["type"] != "BOOKMARK":
                            on_event(event["type"], event["object"])
                        if stop.is_set():
                            return
                finally:
                    resp.close()
                    resp.release_conn()
        except Exception:  # noqa: BLE001 - 410 Gone, 504, a reset connection: list and watch again
            time.sleep(0.5)


class BareClient:
    """Two watches feed one queue; `threads` workers create the pods and Jobs by fixed names."""

    def __init__(self, api, namespace: str, threads: int, settings):
        from kubernetes import client

        self.core, self.batch = client.CoreV1Api(api), client.BatchV1Api(api)
        self.custom = client.CustomObjectsApi(api)
        self.namespace, self.threads, self.settings = namespace, threads, settings
        self.work: queue.Queue = queue.Queue()
        self.jobs: dict = {}  # FineTuneJob name -> object (its uid goes into the owner references)
        self.pods_queued: set = set()
        self.trainers_queued: set = set()
        self.counts = {"podsCreated": 0, "trainerJobsCreated": 0, "alreadyExisted": 0, "validateFailed": 0,
                       "errors": 0}
        self.lock = threading.Lock()
        self.stop = threading.Event()

    def on_finetunejob(self, kind: str, obj: dict) -> None:
        name = obj["metadata"]["name"]
        if kind == "DELETED":
            return
        with self.lock:
            self.jobs[name] = obj
            if name in self.pods_queued:
                return
            self.pods_queued.add(name)
        self.work.put(("pod", name))

    def on_pod(self, kind: str, pod: dict) -> None:
        phase = (pod.get("status") or {}).get("phase")
        owner = (pod["metadata"].get("annotations") or {}).get(FINETUNEJOB_ANNOTATION)
        if kind == "DELETED" or owner is None or phase not in ("Succeeded", "Failed"):
            return
        with self.lock:
            if owner in self.trainers_queued:
                return
            self.trainers_queued.add(owner)
            if phase == "Failed":
                self.counts["validateFailed"] += 1
                return
        self.work.put(("trainer", owner))

    def act(self, what: str, name: str) -> None:
        from kubernetes.client.exceptions import ApiException

        from finetune_operator.builders import trainer_job, validate_pod

        ftj = self.jobs[name]
        try:
            if what == "pod":
                self.core.create_namespaced_pod(self.namespace, validate_pod.validate_pod(ftj, self.settings),
                                                _preload_content=False)
            else:
                self.batch.create_namespaced_job(self.namespace, trainer_job.trainer_job(ftj, 1, self.settings),
                                                 _preload_content=False)
            counter = "podsCreated" if what == "pod" else "trainerJobsCreated"
        except ApiException as err:
            counter = "alreadyExisted" if err.status == 409 else "errors"
            if err.status != 409:
                print(f"{what} {name}: {err.status} {err.reason}", file=sys.stderr, flush=True)
            if (err.status or 500) >= 500:  # an overloaded apiserver: try again, as any controller would
                time.sleep(0.5)
                self.work.put((what, name))
        except Exception as err:  # noqa: BLE001 - a reset connection: try again
            counter = "errors"
            print(f"{what} {name}: {err!r}", file=sys.stderr, flush=True)
            time.sleep(0.5)
            self.work.put((what, name))
        with self.lock:
            self.counts[counter] += 1

    def worker(self) -> None:
        while not self.stop.is_set():
            try:
                what, name = self.work.get(timeout=0.5)
            except queue.Empty:
                continue
            self.act(what, name)

    def start(self) -> None:
        """Returns once both watches have listed (then a job created afterwards is never missed)."""
        listed = threading.Barrier(3)
        watches = [
            (lambda **k: self.custom.list_namespaced_custom_object(GROUP, VERSION, self.namespace, "finetunejobs",
                                                                   **k), self.on_finetunejob, {}),
            (lambda **k: self.core.list_namespaced_pod(self.namespace, **k), self.on_pod,
             {"label_selector": VALIDATE_SELECTOR}),
        ]
        for list_fn, handler, params in watches:
            threading.Thread(target=watch_raw, args=(list_fn, handler, self.stop, listed.wait), kwargs=params,
                             daemon=True).start()
        for _ in range(self.threads):
            threading.Thread(target=self.worker, daemon=True).start()
        listed.wait()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--namespace", required=True)
    parser.add_argument("--threads", type=int, default=4, help="the operator's --workers to compare with")
    args = parser.parse_args()
    from kubernetes import config

    from finetune_operator.builders.settings import OperatorSettings

    # The same settings (FTO_VALIDATE_NODE_SELECTOR, ...) as the operator it stands in for.
    bare = BareClient(config.new_client_from_config(), args.namespace, args.threads, OperatorSettings.from_env())
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())
    bare.start()
    print("ready", flush=True)
    while not done.wait(0.5):
        pass
    bare.stop.set()
    with bare.lock:
        print(json.dumps(bare.counts), flush=True)


if __name__ == "__main__":
    main()
