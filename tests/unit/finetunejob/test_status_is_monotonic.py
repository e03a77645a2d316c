"""Property: however late, twice or out of order the operator sees its children (and however
often it reads a stale FineTuneJob, whose write the resourceVersion guard then refuses), the
phase never moves backwards along the documented order and observedGeneration never decreases.

A small simulated world plays one training per seed: the validate pod and each attempt's Job
go through the states the real controllers write (including uncountedTerminatedPods and
SuccessCriteriaMet before Complete); every read of a child returns one of its last few
versions, the Job and its pods independently. decide runs on what was read; act's creations
start the children's timelines. Seeds are fixed: a failure replays.
"""
from __future__ import annotations

import copy
import random

import pytest

from finetune_operator.finetunejob import decide as D, phase as ph

from ftj_fixtures import NOW, SETTINGS, ftj, job, pod, snapshot, termination

OK = termination("Succeeded", manifestUri="s3://out/bot/manifest.json", adapterUri="s3://out/bot/adapter")


def validate_timeline():
    return [None, pod("Pending"), pod("Running"),
            pod("Succeeded", termination("Succeeded", datasetStats={"rows": 3, "tokens": 30}))]


def job_timeline(name, succeed: bool):
    end_pod = pod("Succeeded", OK) if succeed else pod("Failed", "", 137)
    outcome, cond = ("succeeded", ("SuccessCriteriaMet", "")) if succeed else ("failed", ("FailureTarget", ""))
    final = ("Complete", "") if succeed else ("Failed", "BackoffLimitExceeded")
    return [
        (job(name), []),
        (job(name, active=1), [pod("Pending")]),
        (job(name, active=1), [pod("Running")]),
        (job(name, active=0, uncountedTerminatedPods={outcome: ["uid"]}), [end_pod]),
        (job(name, active=0, **{outcome: 1}), [end_pod]),
        (job(name, active=0, **{outcome: 1}, conditions=[cond]), [end_pod]),
        (job(name, active=0, **{outcome: 1}, conditions=[cond, final]), [end_pod]),
    ]


class World:
    def __init__(self, rng: random.Random, failures: int):
        self.rng, self.failures = rng, failures
        self.children: dict = {}   # name -> [timeline, latest index]

    def tick(self):
        for entry in self.children.values():
            if entry[1] < len(entry[0]) - 1 and self.rng.random() < 0.5:
                entry[1] += 1

    def read(self, name):
        """One of the child's last three versions: late, repeated or out of order."""
        if name not in self.children:
            return None
        timeline, latest = self.children[name]
        return timeline[max(0, latest - self.rng.randint(0, 2))]

    def create(self, body):
        name = body["metadata"]["name"]
        if name in self.children:
            return
        if body["kind"] == "Pod":
            self.children[name] = [validate_timeline(), 1]
        elif body["kind"] == "Job":
            attempt = int(name.rsplit("-", 1)[1])
            self.children[name] = [job_timeline(name, attempt > self.failures), 0]


def observe(world: World, obj: dict):
    status = obj.get("status") or {}
    attempt = int(status.get("attempts") or 1)
    job_read = world.read(f"bot-train-{attempt}")
    pods_read = world.read(f"bot-train-{attempt}")  # listed separately from the Job
    from finetune_operator.finetunejob.snapshot import Verified
    return snapshot(obj, SETTINGS, config_map_exists=True, validate_pod=world.read("bot-validate"),
                    job=job_read[0] if job_read else None, pods=tuple(pods_read[1]) if pods_read else (),
                    verified=Verified(adapter_uri="s3://out/bot/adapter", digest="sha256:1", manifest={}, files=1))


def play(seed: int, failures: int):
    rng = random.Random(seed)
    world, now = World(rng, failures), NOW
    versions = [ftj()]  # every version of the FineTuneJob the apiserver held
    written = []
    for _ in range(400):
        world.tick()
        now += rng.uniform(0.5, 3.0)
        if rng.random() < 0.05:  # a spec edit: a new generation
            obj = copy.deepcopy(versions[-1])
            obj["metadata"]["generation"] += 1
            versions.append(obj)
        read = versions[-1] if rng.random() < 0.8 else versions[max(0, len(versions) - 2)]
        decision = D.decide(observe(world, read), now)
        for action in decision.actions:
            if action.kind == D.CREATE:
                world.create(action.body)
        if read is not versions[-1]:
            continue  # the status write carries a stale resourceVersion: the apiserver refuses it
        if decision.status != (read.get("status") or {}):
            obj = copy.deepcopy(read)
            obj["status"] = decision.status
            versions.append(obj)
            written.append(decision.status)
        if (versions[-1]["status"] or {}).get("phase") in ph.TERMINAL:
            break
    return written


@pytest.mark.parametrize("seed", range(200))
def test_phase_never_moves_backwards_and_observed_generation_never_decreases(seed):
    failures = seed % 3  # 0, 1 or 2 retryable failures before an attempt succeeds
    written = play(seed, failures)
    phases = [(s.get("phase"), s.get("attempts")) for s in written]
    assert written and written[-1]["phase"] == "Succeeded", phases
    assert written[-1]["attempts"] == failures + 1
    for before, after in zip(written, written[1:]):
        assert not ph.moved_backwards(before, after), phases
        assert after.get("observedGeneration", 0) >= before.get("observedGeneration", 0)
    seen_running = set()
    for s in written:
        if s["phase"] == "Running":
            seen_running.add(s.get("attempts"))
        if s["phase"] == "Queued":
            assert s.get("attempts") not in seen_running, f"Queued after Running in the same attempt: {phases}"
