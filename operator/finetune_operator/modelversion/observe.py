"""Observe: one ModelVersion pass's reads of the world, once each, into a Snapshot (snapshot.py).

The object with the CRD's defaults applied; registration (the FineTuneJob, and the manifest's and
files' sha256s in S3 until the version is registered); the model's production record; the serving
pods and what each one's adapter agent reports (one pod list and one /admin/state per pod); the
other versions of the model when the decision needs them; a PromQL answer when a canary step or a
bake window is on and its interval is due. Nothing here writes anything.
"""
from __future__ import annotations

import base64
import copy
import threading
import time
from typing import Optional

from finetune_api import modelversion_crd
from finetune_api.structural import apply_defaults

from .. import credentials, kube, storage
from . import agent_client, analysis, conditions as cond, decide, production, prometheus, promql, record, register
from .pods import PodView, label_selector, ready_pods, view_from_state
from .snapshot import Analysis, Registration, Snapshot

GROUP, VERSION, PLURAL = "finetune.fto.dev", "v1alpha1", "modelversions"
STATE_TIMEOUT = 2.0         # /admin/state, flip, weights: short, a rollback must finish in seconds
_SPEC_SCHEMA = modelversion_crd.spec()
# When each version's analysis query last ran (in memory: a restart only runs it a little early).
_last_query: dict = {}
_last_query_lock = threading.Lock()


def with_defaults(obj: dict) -> dict:
    mv = copy.deepcopy(obj)
    mv["spec"] = apply_defaults(obj.get("spec") or {}, _SPEC_SCHEMA)
    return mv


def _due(key: tuple, interval: float) -> bool:
    now = time.monotonic()
    with _last_query_lock:
        if now - _last_query.get(key, -1e18) < interval:
            return False
        _last_query[key] = now
        return True


class Observer:
    def __init__(self, obj: dict, settings, runtime=None):
        self.mv, self.settings, self.runtime = with_defaults(obj), settings, runtime
        self.spec, self.meta = self.mv["spec"], self.mv["metadata"]
        self.ns, self.name = self.meta["namespace"], self.meta["name"]
        self.target = self.spec.get("servingTarget") or {}
        self.store = record.Store(kube.core(), record.home(), record.record_name(self.ns, self.spec["model"]),
                                  self.spec["model"], tenant=self.ns)
        self._token: Optional[str] = None
        self._token_error = ""

    def snapshot(self) -> Snapshot:
        reg = self.registration()
        if reg.state not in ("registered", "verified"):
            return Snapshot(self.mv, reg)
        rec = self.store.read(create=False)
        views = tuple(self.views()) if self.target else None
        now = time.time()
        need_others = not production.is_production(rec, self.name) or \
            decide.bake_window_open(self.spec, rec, now, self.mv.get("status"))
        return Snapshot(self.mv, reg, record=rec, views=views, others=self.others() if need_others else None,
                        analysis=self.analysis(rec, now), record_at=record.record_ref(self.ns, self.spec["model"]))

    # --- registration -------------------------------------------------------------------------------------------
    def registration(self) -> Registration:
        status, gen = self.mv.get("status") or {}, self.meta.get("generation", 1)
        done = register.adapter_from_status(status, self.spec)
        if done and cond.status_of(status.get("conditions"), cond.REGISTERED) == "True" and done.manifest_uri:
            return Registration("registered")
        if status.get("phase") == "Failed" and status.get("observedGeneration") == gen:
            return Registration("unchanged")
        source = self.spec["adapter"]
        job_name = (source.get("fromJob") or {}).get("name", "")
        if job_name:
            custom = kube.custom()
            job = kube.read_or_none(lambda n, **k: custom.get_namespaced_custom_object(
                GROUP, VERSION, self.ns, "finetunejobs", n, **k), job_name)
            js = register.from_job(job, job_name)
            if js.state in ("wait", "failed"):
                return Registration(js.state, js.reason, js.message, job_name=job_name)
            candidates, digest = [js.manifest_uri], js.digest
        else:
            candidates, digest = register.manifest_candidates(source["uri"]), source["digest"]
        try:
            s3 = storage.client_for(kube.core(), self.ns, self.spec.get("credentials"))
            return Registration("verified", verified=_verify(s3, candidates, digest), job_name=job_name)
        except storage.StorageError as err:
            transient = err.reason in ("S3Unavailable", "CredentialsMissing", "AccessDenied")
            return Registration("unavailable" if transient else "failed", err.reason, err.message, job_name=job_name)

    # --- the serving pods ---------------------------------------------------------------------------------------
    def token(self) -> str:
        if self._token is None:
            ref = self.target.get("adminTokenSecretRef")
            self._token = ""
            if ref:
                try:  # only a Secret opted in (credentials.LABEL) is ever read
                    secret = credentials.read(kube.core(), self.ns, ref["name"], "spec.servingTarget.adminTokenSecretRef")
                except storage.StorageError as err:
                    self._token_error = err.message
                    return self._token
                data = secret.get("data") or {}
                if ref["key"] in data:
                    self._token = base64.b64decode(data[ref["key"]]).decode().strip()
        return self._token

    def agent(self, pod, timeout: float = STATE_TIMEOUT) -> agent_client.Agent:
        if self.runtime is not None:
            self.runtime.fence()  # every call to a pod's agent is made only while this replica leads
        return agent_client.Agent(pod, int(self.target["port"]), self.token(), timeout)

    def views(self) -> list[PodView]:
        selector = label_selector((self.target.get("selector") or {}).get("matchLabels") or {})
        listed = kube.raw(kube.core().list_namespaced_pod(self.ns, label_selector=selector, _preload_content=False))
        self.token()
        if self._token_error:  # no call to an agent without its token; the pods' condition says why
            return [PodView(pod, error=self._token_error) for pod in ready_pods(listed["items"])]
        return [view_from_state(pod, state) if err is None else PodView(pod, error=str(err))
                for pod, state, err in agent_client.each(ready_pods(listed["items"]), lambda p: self.agent(p).state())]

    # --- the other versions, the analysis ----------------------------------------------------------------------
    def others(self) -> tuple:
        custom = kube.custom()
        items = kube.raw(custom.list_namespaced_custom_object(GROUP, VERSION, self.ns, PLURAL,
                                                              _preload_content=False))["items"]
        return tuple(with_defaults(mv) for mv in items if mv["metadata"]["name"] != self.name and
                     (mv.get("spec") or {}).get("model") == self.spec["model"])

    def analysis(self, rec: record.Record, now: float) -> Optional[Analysis]:
        wanted = decide.analysis_wanted(self.mv, rec, now)
        if wanted is None:
            return None
        kind, spec_a = wanted
        if not _due((self.ns, self.name, kind), float(spec_a["intervalSeconds"])):
            return None
        query = analysis.render(spec_a["query"], model=self.spec["model"], version=self.spec["version"],
                                namespace=self.ns)
        try:  # every selector reads this namespace only (promql.py); the URL must be an allowed one
            query = promql.scope(query, self.ns, self.settings.prometheus_namespace_label)
            value = prometheus.query(spec_a.get("prometheusUrl") or self.settings.prometheus_url, query,
                                     (self.settings.prometheus_url, *self.settings.prometheus_allowed_urls))
        except (promql.Unscoped, prometheus.QueryError) as err:
            return Analysis(query, None, error=str(err), seen=time.monotonic())
        return Analysis(query, value, seen=time.monotonic())


def _verify(s3, candidates: list, digest: str) -> storage.VerifiedManifest:
    last = None
    for uri in candidates:
        try:
            return storage.verify_manifest(s3, uri, digest)
        except storage.StorageError as err:
            if err.reason != "NotFound":
                raise
            last = err
    raise storage.StorageError("NotFound", f"no manifest.json at {' or '.join(candidates)}: {last.message}")
