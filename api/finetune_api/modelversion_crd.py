"""The ModelVersion CRD: one adapter version of a logical model, its stage, and how it is served.

The operator enforces what the schema cannot see: at most one production version per model per
namespace, serialized promotions, compatibility with the serving pods, gates and rollbacks. A
rollback never edits spec: it shows in status (phase RolledBack, condition, events), so a GitOps
tool reports the object as degraded until Git says something else.
"""
from __future__ import annotations

from . import datasets, finetunejob_crd as ftj
from .schema import (array, boolean, column, conditions, crd_document, dns_label, integer, local_object_ref, number, number_map, obj,
                     rule, s3_prefix, sha256_digest, string, timestamp)

KIND = "ModelVersion"
STAGES = ["candidate", "production", "archived"]
PHASES = ["Pending", "Registering", "Registered", "Promoting", "Production", "RolledBack", "Archived", "Failed"]


def adapter() -> dict:
    return obj("spec.adapter: the adapter's files: from a FineTuneJob of this namespace, or an s3:// prefix with "
               "the digest of its manifest (for adapters trained elsewhere).", {
                   "fromJob": local_object_ref("spec.adapter.fromJob: the FineTuneJob whose result this is; the "
                                               "version waits for it to succeed.", "FineTuneJob"),
                   "uri": s3_prefix("spec.adapter.uri: s3:// prefix holding adapter_config.json, "
                                    "adapter_model.safetensors and manifest.json.", "spec.adapter.uri"),
                   "digest": sha256_digest("spec.adapter.digest: sha256 of the adapter's manifest.json; files that "
                                           "do not match are refused.", "spec.adapter.digest"),
               }, rules=[
                   rule("has(self.fromJob) != has(self.uri)",
                        "spec.adapter needs exactly one of fromJob (a FineTuneJob) or uri (s3://...)"),
                   rule("!has(self.uri) || has(self.digest)",
                        "spec.adapter.uri needs spec.adapter.digest (sha256:...) so the files can be verified",
                        field_path=".digest"),
                   rule("!has(self.fromJob) || !has(self.digest)",
                        "spec.adapter.digest only applies with spec.adapter.uri; a fromJob adapter's digest comes "
                        "from the job's manifest", field_path=".digest"),
               ])


def rollout() -> dict:
    step = obj("One canary step.", {
        "weight": integer("Percent of the alias's traffic sent to the new version.", minimum=1, maximum=99),
        "pauseSeconds": integer("How long to hold this step while the analysis runs.", minimum=0, maximum=86400,
                                default=60),
    }, required=["weight"])
    return obj("spec.rollout: how a promotion reaches the serving pods.", {
        "strategy": string("spec.rollout.strategy: AllAtOnce preloads on every pod, then flips the alias "
                           "everywhere; Canary first splits traffic by the steps' weights.",
                           enum=["AllAtOnce", "Canary"], default="AllAtOnce"),
        "steps": array("spec.rollout.steps: canary weights, increasing.", step, max_items=10, min_items=1,
                       # CEL has no index-aware all(); maxItems is 10, so walk the indices explicitly.
                       rules=[rule("[1, 2, 3, 4, 5, 6, 7, 8, 9].all(k, k >= size(self) || "
                                   "self[k - 1].weight < self[k].weight)",
                                   "spec.rollout.steps weights must be strictly increasing")]),
        "analysis": analysis("spec.rollout.analysis", "at each canary step; a breach aborts the canary"),
    }, default={"strategy": "AllAtOnce"}, rules=[
        rule("self.strategy != 'Canary' || (has(self.steps) && has(self.analysis))",
             "spec.rollout.strategy Canary needs spec.rollout.steps and spec.rollout.analysis"),
        rule("self.strategy == 'Canary' || !has(self.steps)",
             "spec.rollout.steps only applies to strategy Canary", field_path=".steps"),
    ])


def analysis(path: str, when: str) -> dict:
    return obj(f"{path}: a PromQL query evaluated {when}. The query may use $version, $model and $namespace.", {
        "query": string("PromQL returning one number, e.g. a per-version error rate.", max_length=4096,
                        min_length=1),
        "threshold": number("The breach threshold."),
        "comparison": string("A breach is query > threshold (GreaterThan) or query < threshold (LessThan).",
                             enum=["GreaterThan", "LessThan"], default="GreaterThan"),
        "intervalSeconds": integer("How often the query runs.", minimum=1, maximum=3600, default=15),
        "prometheusUrl": string("Prometheus base URL; default: the operator's --prometheus-url.", max_length=512,
                                rules=[rule(r"self.matches('^https?://[^\\s]+$')",
                                            f"{path}.prometheusUrl must be an http(s):// URL")]),
    }, required=["query", "threshold"])


def rollback() -> dict:
    node = analysis("spec.rollback", "during the bake window after promotion; a breach rolls back to the "
                                     "previous production version")
    node["properties"]["bakeWindowSeconds"] = integer("How long after promotion the query is watched (extended "
                                                      "by every blind check).", minimum=1, maximum=604800,
                                                      default=300)
    node["properties"]["maxBlindChecks"] = integer(
        "spec.rollback.maxBlindChecks: consecutive blind checks (Prometheus did not answer, or the query had no "
        "data) after which onBlind applies. Fail closed: a version nobody can see is not trusted. The default "
        "leaves room for a query that has no data until traffic arrives (e.g. an error ratio).",
        minimum=1, maximum=1000, default=60)
    node["properties"]["onBlind"] = string(
        "spec.rollback.onBlind: after maxBlindChecks blind checks, Rollback (as a breach would) or Hold (keep "
        "serving, condition Blind=True, the bake window does not end while blind).",
        enum=["Rollback", "Hold"], default="Rollback")
    return node


def spec() -> dict:
    return obj("ModelVersion spec: the adapter, its stage, and where it is served. The operator never writes "
               "it.", {
                   "model": dns_label("spec.model: the logical model name clients call (e.g. support-bot).",
                                      "spec.model"),
                   "version": dns_label("spec.version: this version's name, unique per model (e.g. v3 or "
                                        "2025-06-01).", "spec.version"),
                   "adapter": adapter(),
                   "baseModel": obj("spec.baseModel: the base model the adapter was trained on. Required with "
                                    "spec.adapter.uri; with fromJob it is copied from the job.", {
                                        "name": dns_label("The base model's name.", "spec.baseModel.name"),
                                        "digest": sha256_digest("The base model weights' digest; pods serving "
                                                                "another digest are refused.",
                                                                "spec.baseModel.digest"),
                                    }, required=["name"]),
                   "credentials": ftj.credentials(),
                   "stage": string("spec.stage: candidate (registered, not served as the alias), production (the "
                                   "alias points here) or archived (unloaded).", enum=STAGES, default="candidate"),
                   "servingTarget": ftj.serving_target("spec.servingTarget"),
                   "gates": ftj.gates("spec.gates"),
                   "rollout": rollout(),
                   "rollback": rollback(),
               }, required=["model", "version", "adapter"], rules=[
                   rule("!has(self.adapter.uri) || has(self.baseModel)",
                        "spec.baseModel is required with spec.adapter.uri (the operator checks it against the "
                        "serving pods)", field_path=".baseModel"),
                   rule("self.stage != 'production' || has(self.servingTarget)",
                        "spec.stage production needs spec.servingTarget (which pods serve it)",
                        field_path=".servingTarget"),
               ])


def status() -> dict:
    served = obj("What one serving pod has.", {
        "pod": string("Pod name.", max_length=253),
        "ip": string("Pod IP.", max_length=64),
        "loaded": boolean("The version is loaded there."),
        "aliasTarget": string("The served name the model alias points to on that pod (name=weight,... while "
                              "split by a canary).", max_length=253),
        "weight": integer("Percent of alias traffic to this version (canary).", minimum=0, maximum=100),
        "message": string("Why the pod does not serve this version as asked: a failed preload or flip, an "
                          "incompatibility, an agent that did not answer.", max_length=4096),
    })
    return obj("ModelVersion status, written only by the operator.", {
        "observedGeneration": integer("The metadata.generation the status reflects.", fmt="int64"),
        "phase": string("Pending, Registering, Registered, Promoting, Production, RolledBack, Archived or Failed.",
                        enum=PHASES),
        "reason": string("CamelCase reason, e.g. DigestMismatch, GatesFailed, IncompatibleAdapter, RolledBack.",
                         max_length=128),
        "message": string("The reason in plain words.", max_length=32768),
        "conditions": conditions("Conditions: Registered, GatesPassed, Compatible, Promoted, Ready. phase, reason "
                                 "and message are derived from them: from Registered until the adapter is "
                                 "verified, then from Promoted."),
        "servedName": string("The content-addressed name the engines load it under (<model>--<version>-<sha8>).",
                             max_length=253),
        "adapter": obj("The verified adapter.", {
            "uri": string("s3:// prefix.", max_length=1024),
            "manifestUri": string("s3:// URI of the verified manifest.json.", max_length=1024),
            "digest": string("sha256 of manifest.json.", max_length=71),
            "rank": integer("LoRA rank.", minimum=0),
            "targetModules": array("LoRA target modules.", string("Module name.", max_length=128), max_items=64),
            "files": array("Files and their digests.", obj("A file.", {
                "name": string("Path relative to the adapter prefix.", max_length=512),
                "sha256": string("Hex digest.", max_length=64),
                "size": integer("Bytes.", fmt="int64"),
            }), max_items=64),
        }),
        "lineage": obj("Where the adapter came from (from the training manifest).", {
            "jobName": string("The FineTuneJob.", max_length=253),
            "datasetUri": string("Training data.", max_length=1024),
            "datasetEtag": string("Its S3 ETag (kept for compatibility; not a content digest: see datasets).",
                                  max_length=128),
            "datasets": datasets.schema("Every dataset object the adapter was trained and evaluated on, by "
                                            "sha256 (the manifest's dataset.sources)."),
            "baseModelDigest": string("Base weights' digest.", max_length=71),
            "configHash": string("sha256 of the trainer config.", max_length=71),
            "trainerImage": string("Trainer image.", max_length=512),
            "metrics": number_map("Evaluation metrics."),
        }),
        "gates": array("Each gate's outcome.", obj("A gate result.", {
            "metric": string("Metric.", max_length=128),
            "value": number("Measured value."),
            "passed": boolean("Whether it passed."),
            "message": string("Details.", max_length=1024),
        }), max_items=32),
        "servedBy": array("Per serving pod: what is loaded and where the alias points.", served, max_items=256),
        "promotedAt": timestamp("When it last became production (the production record's promotedAt; a "
                                "rollback that restores this version sets it again)."),
        "rolledBackAt": timestamp("When it was rolled back (by its analysis, its canary, or by hand)."),
        "rollback": obj("Why it was rolled back: by its bake-window query (trigger analysis) or its canary "
                        "analysis (trigger canary), with the query, value, threshold and measured seconds; or, "
                        "on the version a manual rollback replaced, trigger manual and the version restored.", {
            "query": string("The query.", max_length=4096),
            "value": number("The value seen."),
            "threshold": number("The threshold."),
            "restoredVersion": string("The version restored to production.", max_length=253),
            "trigger": string("What triggered it: analysis (bake-window query), blind (spec.rollback.maxBlindChecks "
                              "checks in a row without an answer or data), canary (canary analysis) or manual (an "
                              "older version asked for production again and replaced this one).",
                              max_length=32),
            "blindChecks": integer("Trigger blind: how many checks in a row saw nothing.", minimum=0),
            "seconds": number("From the breach seen to every pod flipped back (measured; analysis and canary)."),
        }),
        "canary": obj("Progress of a canary promotion.", {
            "step": integer("Index of the current step (0-based).", minimum=0),
            "weight": integer("Percent of the alias's traffic on this version.", minimum=0, maximum=100),
            "stepStartedAt": timestamp("When the current step began."),
            "lastValue": number("The analysis query's last value (kept between evaluations)."),
            "previousVersion": string("The version that keeps the rest of the traffic.", max_length=253),
        }),
        "bakeWindow": obj("The bake window's blind checks (spec.rollback): a check is blind when Prometheus did "
                          "not answer or the query had no data.", {
            "promotedAt": timestamp("The promotion this window belongs to."),
            "blindChecks": integer("Blind checks in a row now (0: the last check saw data).", minimum=0),
            "extendedSeconds": number("How far blind checks have pushed the window's end past "
                                      "bakeWindowSeconds."),
            "endsAt": timestamp("When the window ends now (unless more checks are blind)."),
        }),
        "productionRecord": string("<namespace>/<name> of the ConfigMap holding the model's production record "
                                   "(which version is in effect, the previous one, and promotion decisions), in "
                                   "the operator's own namespace where tenants cannot write it.", max_length=253),
    })


def crd() -> dict:
    root = obj("ModelVersion: one version of a fine-tuned adapter for a logical model, its stage and its "
               "serving.", {
                   "apiVersion": string("API version.", max_length=64),
                   "kind": string("Kind.", max_length=64),
                   "metadata": {"type": "object"},
                   "spec": spec(),
                   "status": status(),
               }, required=["spec"], rules=[
                   rule("self.spec.model == oldSelf.spec.model && self.spec.version == oldSelf.spec.version && "
                        "self.spec.adapter == oldSelf.spec.adapter",
                        "spec.model, spec.version and spec.adapter are immutable: register a new ModelVersion for "
                        "a new adapter"),
               ])
    return crd_document(ftj.GROUP, ftj.VERSION, KIND, "modelversions", ["mv", "mver"], [
        column("Model", ".spec.model"),
        column("Version", ".spec.version"),
        column("Stage", ".spec.stage"),
        column("Phase", ".status.phase"),
        column("Reason", ".status.reason", priority=1),
        column("Served", ".status.servedName", priority=1),
        column("Age", ".metadata.creationTimestamp", "date"),
    ], root)
