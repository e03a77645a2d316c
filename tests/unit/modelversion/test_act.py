"""act.Actor: actions in order, all-or-nothing stops, a failed pod is not called again, measured reports.

The agents here are in-memory stand-ins for the HTTP agent (the e2e suite calls the real ones)."""
from __future__ import annotations

from finetune_operator.modelversion import act, agent_client, record
from finetune_operator.modelversion.snapshot import Emit, Flip, Preload, Report, WriteRecord

from finetune_operator.modelversion.register import Adapter
from mv_fixtures import MODEL, pod, rec, served

ADAPTER = Adapter("s3://b/v2/adapter/", "s3://b/v2/manifest.json", "sha256:" + "2" * 64, 4, ("q_proj",), "", "")


class Agents:
    """What each pod's agent was asked; pods in `broken` answer every call with an error."""

    def __init__(self, broken=()):
        self.calls, self.broken = [], set(broken)

    def agent(self, p, timeout: float = 2.0):
        agents = self

        class One:
            pod = p

            def _do(self, what, *args):
                agents.calls.append((p.name, what))
                if p.name in agents.broken:
                    raise agent_client.AgentError("AccessDenied", "no")
                return {"name": args[-1] if args else "", "seconds": 0.5}

            def preload(self, *args):
                return self._do("preload", *args)

            def flip(self, model, name):
                return self._do("flip", name)
        return One()


class Store:
    def __init__(self):
        self.written = []

    def write(self, r: record.Record) -> record.Record:
        self.written.append(r)
        r.resource_version = str(len(self.written) + 10)
        return r


def actor(agents, store, events):
    return act.Actor("team", MODEL, store, agents, lambda *e: events.append(e), None, analysis_seen=0.0)


PODS = (pod("pod-a").pod, pod("pod-b").pod)


def test_a_failed_all_or_nothing_action_stops_the_actions_after_it():
    agents, store, events = Agents(broken={"pod-b"}), Store(), []
    result = actor(agents, store, events).run(
        [Preload(PODS, ADAPTER, "v2"), Flip(PODS, served("v2")), WriteRecord(rec("v2")), Emit("Normal", "X", "x")], "7")
    assert result.outcome.stopped and result.outcome.failed() == {"pod-b": "AccessDenied: no"}
    assert [c for c in agents.calls if c[1] == "flip"] == [] and store.written == []
    assert [e[1] for e in events] == ["AdapterPreloaded"]  # pod-a's preload, not the Emit after the stop
    assert result.done[0][1] == {"pod-a"}


def test_a_pod_that_failed_is_not_called_again_in_the_pass():
    agents, store, events = Agents(broken={"pod-b"}), Store(), []
    result = actor(agents, store, events).run(
        [Preload(PODS, ADAPTER, "v2", all_or_nothing=False), Flip(PODS, served("v2"), all_or_nothing=False),
         WriteRecord(rec("v2"))], "7")
    assert agents.calls.count(("pod-b", "preload")) == 1 and ("pod-b", "flip") not in agents.calls
    assert store.written[0].resource_version == "11" and result.record is store.written[0]
    assert ("Normal", "AdapterPreloaded", f"pod pod-a loaded {'sha256:' + '2' * 64} in 0.50 s") in events


def test_records_are_written_with_the_resource_version_of_the_write_before():
    store = Store()
    actor(Agents(), store, []).run([WriteRecord(rec("v1")), WriteRecord(rec("v2"))], "7")
    assert [r.production for r in store.written] == ["bot-v1", "bot-v2"]
    assert store.written[1].resource_version == "12"


def test_a_measured_flip_back_is_reported_with_its_pods_and_seconds():
    agents, events = Agents(broken={"pod-b"}), []
    result = actor(agents, Store(), events).run(
        [Flip(PODS, served("v1"), all_or_nothing=False, measure="rollback"), Report("Warning", "RolledBack", "q", 2)],
        "7")
    assert result.outcome.seconds is not None
    (kind, reason, message), = events
    assert (kind, reason) == ("Warning", "RolledBack")
    assert message.startswith("q on 1/2 pods in ") and "still to flip (converged later): ['pod-b']" in message


def test_actions_already_performed_in_the_pass_are_skipped():
    events = []
    emit = Emit("Warning", "VersionSkew", "x")
    actor(Agents(), Store(), events).run([emit], "7", skip=(emit,))
    assert events == []
