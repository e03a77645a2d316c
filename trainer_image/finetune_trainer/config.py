"""The trainer's job description: one schema shared with the operator.

The config *is* a FineTuneJob spec (the operator passes the object's spec as the apiserver
defaulted it) plus who the job is and a few runtime settings:

    {"job": {"namespace": "team-a", "name": "support-bot", "uid": "…", "attempt": 1},
     "spec": {…FineTuneJob spec…},
     "runtime": {"metricsPort": 9090, "workDir": "/tmp/fto", "baseModelPath": null}}

A whole FineTuneJob manifest is accepted too (its metadata gives the identity), so
`finetune-trainer train --config examples/finetunejob-lora-minimal.yaml` works as is. Defaults
and structural checks come from the CRD schema code (finetune_api), never a copy.
"""
from __future__ import annotations

import dataclasses
import hashlib
import hmac
import json
import os
from pathlib import Path
from typing import Optional

import yaml

from finetune_api import datasets, finetunejob_crd, resume
from finetune_api.structural import SchemaError, apply_defaults, validate

from .architectures import default_target_modules

CONFIG_ENV = "FTO_TRAINER_CONFIG"            # the config as a JSON string
CONFIG_FILE_ENV = "FTO_TRAINER_CONFIG_FILE"  # or a path to it
# Set by the operator on its pods: the sha256 of the config document it wrote. A config that does
# not hash to it is refused (someone else's ConfigMap under the job's name, or one changed since).
CONFIG_DIGEST_ENV = "FTO_TRAINER_CONFIG_SHA256"
DEFAULT_FIELDS = {
    "promptCompletion": {"prompt": "prompt", "completion": "completion", "system": "system"},
    "instruction": {"instruction": "instruction", "input": "input", "response": "response", "system": "system"},
    "chat": {"messages": "messages"},
    "text": {"text": "text"},
}


class ConfigError(ValueError):
    pass


class ConfigMismatch(ConfigError):
    """The config is not the document the operator wrote for this pod (ExitCode.CONFIG_MISMATCH)."""


def verify_digest(text: str, expected: Optional[str], source: str) -> None:
    """Raises ConfigMismatch unless text hashes to expected; nothing to check without one (a run
    outside the operator). The message never quotes the content."""
    if not expected:
        return
    actual = "sha256:" + hashlib.sha256(text.encode("utf-8")).hexdigest()
    if not hmac.compare_digest(actual, expected):
        raise ConfigMismatch(f"the config in {source} is not the one the operator wrote for this job (sha256 "
                             f"{actual[:19]}…, expected {expected[:19]}… from ${CONFIG_DIGEST_ENV}): refusing to use "
                             "it. Another object may hold the job's ConfigMap name; see the job's events")


@dataclasses.dataclass(frozen=True)
class JobIdentity:
    namespace: str
    name: str
    uid: str
    attempt: int = 1

    @property
    def key(self) -> str:
        """What a checkpoint must match to be resumed: the same job, not just the same name."""
        return f"{self.namespace}/{self.name}/{self.uid}"


@dataclasses.dataclass(frozen=True)
class Runtime:
    metrics_port: int = 9090
    metrics_host: str = "0.0.0.0"
    work_dir: Path = Path("/tmp/finetune-trainer")
    base_model_path: Optional[str] = None  # a mounted folder (PVC) or local copy instead of baseModel.uri
    termination_message_path: str = "/dev/termination-log"
    # Parts each planned micro-batch is processed in, one after another (set by the operator after
    # an out-of-memory attempt). Not part of the config hash: steps, gradients and data order are
    # the same, so checkpoints of the unsplit run resume as they are.
    micro_batch_split: int = 1
    # Which checkpoint a relaunch may resume from (finetune_api.resume): RECORDED, only
    # `resume_from`, the operator's record (none: step 0); LATEST, the newest of this job in the prefix.
    resume_policy: str = resume.LATEST
    resume_from: Optional[dict] = None  # {step, uri, digest}
    # Caps on what the trainer reads (data.py), and the time one answerRegex match may take
    # (evaluate.py): runtime.maxFileBytes / maxRowBytes / regexTimeoutSeconds, or FTO_* env.
    max_file_bytes: int = 2 * 1024 ** 3
    max_row_bytes: int = 4 * 1024 ** 2
    regex_timeout_seconds: float = 1.0
    # The dataset objects the validate pod checked (finetune_api.datasets sources, from
    # $FTO_VALIDATED_DATASETS, set by the operator on the trainer Job): each object read is checked against them.
    validated_datasets: tuple = ()
    # spec.dataSafety.moderation's endpoint, resolved by the operator from its admin-set list (never the tenant's URL).
    moderation_url: Optional[str] = None


@dataclasses.dataclass(frozen=True)
class TrainerConfig:
    job: JobIdentity
    spec: dict
    runtime: Runtime

    # Typed shortcuts into the defaulted spec.
    @property
    def base_model(self) -> dict:
        return self.spec["baseModel"]

    @property
    def dataset(self) -> dict:
        return self.spec["dataset"]

    @property
    def method(self) -> str:
        return self.spec["method"]["type"]

    @property
    def lora(self) -> dict:
        return apply_defaults(self.spec["method"].get("lora") or {},
                              finetunejob_crd.method()["properties"]["lora"])

    @property
    def quantization(self) -> dict:
        return apply_defaults(self.spec["method"].get("quantization") or {},
                              finetunejob_crd.method()["properties"]["quantization"])

    @property
    def training(self) -> dict:
        return self.spec["training"]

    @property
    def early_stopping(self) -> Optional[dict]:
        es = self.training.get("earlyStopping")
        return None if es is None else apply_defaults(es, finetunejob_crd.training()["properties"]["earlyStopping"])

    @property
    def output_uri(self) -> str:
        return self.spec["output"]["uri"].rstrip("/")

    @property
    def fields(self) -> dict:
        return {**DEFAULT_FIELDS[self.dataset["format"]], **(self.dataset.get("fields") or {})}

    @property
    def s3_endpoint(self) -> Optional[str]:
        return (self.spec.get("credentials") or {}).get("endpoint") or os.environ.get("AWS_ENDPOINT_URL") or None

    @property
    def s3_region(self) -> str:
        return (self.spec.get("credentials") or {}).get("region") or os.environ.get("AWS_DEFAULT_REGION", "us-east-1")

    def target_modules(self, model_type: str) -> list[str]:
        explicit = self.lora.get("targetModules")
        if explicit:
            return "all-linear" if explicit == ["all-linear"] else list(explicit)
        arch = self.base_model.get("architecture", "auto")
        return default_target_modules(model_type if arch == "auto" else arch)

    @property
    def config_hash(self) -> str:
        """sha256 of what determines the training run; a checkpoint from another hash is not resumed."""
        s = self.spec
        relevant = {k: s.get(k) for k in ("baseModel", "dataset", "method", "training")}
        relevant["outputUri"] = self.output_uri
        relevant["world"] = {k: s["resources"].get(k) for k in ("nodes", "gpusPerNode")}
        return "sha256:" + hashlib.sha256(json.dumps(relevant, sort_keys=True).encode()).hexdigest()


def _cross_field_checks(spec: dict) -> list[str]:
    """The CRD's CEL rules the trainer depends on, restated for runs outside the apiserver."""
    d, t, m = spec["dataset"], spec["training"], spec["method"]
    problems = []
    if "validationUri" in d and "validationSplit" in d:
        problems.append("spec.dataset: set validationUri or validationSplit, not both")
    if "epochs" in t and "maxSteps" in t:
        problems.append("spec.training: set epochs or maxSteps, not both")
    if "warmupRatio" in t and "warmupSteps" in t:
        problems.append("spec.training: set warmupRatio or warmupSteps, not both")
    if "earlyStopping" in t and not ("validationUri" in d or "validationSplit" in d):
        problems.append("spec.training.earlyStopping needs validation data: set spec.dataset.validationUri or "
                        "spec.dataset.validationSplit")
    if m["type"] == "full" and "lora" in m:
        problems.append("spec.method.lora only applies to type lora or qlora")
    if ("uri" in spec["baseModel"]) == ("pvc" in spec["baseModel"]):
        problems.append("spec.baseModel needs exactly one of uri (s3://...) or pvc (claimName)")
    answer_regex = (spec.get("evaluation") or {}).get("answerRegex")
    if answer_regex:
        import regex  # the library evaluate.py matches with: its syntax is what counts
        try:
            regex.compile(answer_regex)
        except regex.error as err:
            problems.append(f"spec.evaluation.answerRegex is not a valid regular expression: {err}")
    if d.get("completionJsonSchema"):
        try:
            json.loads(d["completionJsonSchema"])
        except ValueError as err:
            problems.append(f"spec.dataset.completionJsonSchema is not valid JSON: {err}")
    return problems


def from_dict(doc: dict) -> TrainerConfig:
    if doc.get("kind") == "FineTuneJob":
        meta = doc.get("metadata") or {}
        doc = {"job": {"namespace": meta.get("namespace", "default"), "name": meta.get("name", "job"),
                       "uid": meta.get("uid", "standalone")}, "spec": doc.get("spec")}
    if not isinstance(doc.get("spec"), dict):
        raise ConfigError("config: `spec` (a FineTuneJob spec) is required")
    spec_schema = finetunejob_crd.spec()
    spec = apply_defaults(doc["spec"], spec_schema)
    try:
        validate(spec, spec_schema, "spec")
    except SchemaError as err:
        raise ConfigError(str(err)) from None
    problems = _cross_field_checks(spec)
    if problems:
        raise ConfigError("\n".join(problems))
    job = doc.get("job") or {}
    missing = [k for k in ("namespace", "name", "uid") if not job.get(k)]
    if missing:
        raise ConfigError(f"config.job needs {', '.join(missing)}")
    rt = doc.get("runtime") or {}
    runtime = Runtime(
        metrics_port=int(rt.get("metricsPort", os.environ.get("FTO_METRICS_PORT", 9090))),
        metrics_host=rt.get("metricsHost") or os.environ.get("POD_IP") or "0.0.0.0",
        work_dir=Path(rt.get("workDir") or os.environ.get("FTO_WORK_DIR") or "/tmp/finetune-trainer"),
        base_model_path=rt.get("baseModelPath"),
        termination_message_path=rt.get("terminationMessagePath", "/dev/termination-log"),
        micro_batch_split=_positive_int(os.environ.get("FTO_MICRO_BATCH_SPLIT") or rt.get("microBatchSplit") or 1,
                                        "FTO_MICRO_BATCH_SPLIT"),
        **_resume(rt, spec),
        **_input_limits(rt),
        validated_datasets=_validated_datasets(),
        moderation_url=rt.get("moderationUrl") or None,
    )
    return TrainerConfig(JobIdentity(job["namespace"], job["name"], job["uid"], int(os.environ.get("FTO_TRAINER_ATTEMPT") or job.get("attempt", 1))),
                         spec, runtime)


def _validated_datasets() -> tuple:
    try:
        return datasets.decode(os.environ.get(datasets.ENV))
    except datasets.DatasetSourcesError as err:
        raise ConfigError(f"${datasets.ENV}: {err}") from None


def _resume(rt: dict, spec: dict) -> dict:
    """resume_policy and resume_from: a pointer ($FTO_RESUME_CHECKPOINT, else runtime.resumeFrom) means RECORDED."""
    raw = os.environ.get(resume.RESUME_ENV) or rt.get("resumeFrom")
    policy = rt.get("resumePolicy") or resume.LATEST
    if policy not in resume.POLICIES:
        raise ConfigError(f"runtime.resumePolicy must be one of {', '.join(resume.POLICIES)}, got {policy!r}")
    if not raw:
        return {"resume_policy": policy, "resume_from": None}
    try:
        return {"resume_policy": resume.RECORDED, "resume_from": resume.parse(raw, spec["output"]["uri"])}
    except resume.PointerError as err:
        raise ConfigError(str(err)) from None


def _input_limits(rt: dict) -> dict:
    d = Runtime()
    out = {}
    for field, key, env, kind in (("max_file_bytes", "maxFileBytes", "FTO_MAX_FILE_BYTES", int),
                                  ("max_row_bytes", "maxRowBytes", "FTO_MAX_ROW_BYTES", int),
                                  ("regex_timeout_seconds", "regexTimeoutSeconds", "FTO_REGEX_TIMEOUT_SECONDS", float)):
        raw = os.environ.get(env) or rt.get(key)
        try:
            value = kind(raw) if raw not in (None, "") else getattr(d, field)
        except (TypeError, ValueError):
            value = 0
        if value <= 0:
            raise ConfigError(f"runtime.{key} ({env}) must be a positive number, got {raw!r}")
        out[field] = value
    return out


def _positive_int(value, what: str) -> int:
    try:
        n = int(value)
    except (TypeError, ValueError):
        n = 0
    if n < 1:
        raise ConfigError(f"{what} must be a positive integer, got {value!r}")
    return n


def load(path: Optional[str] = None, env=os.environ) -> TrainerConfig:
    """From --config PATH (JSON or YAML), else $FTO_TRAINER_CONFIG_FILE, else $FTO_TRAINER_CONFIG (JSON)."""
    path = path or env.get(CONFIG_FILE_ENV)
    if path:
        try:
            text = Path(path).read_text()
        except OSError as err:
            raise ConfigError(f"cannot read the config file {path}: {err.strerror}") from None
    elif env.get(CONFIG_ENV):
        text = env[CONFIG_ENV]
    else:
        raise ConfigError(f"no config: pass --config PATH or set {CONFIG_FILE_ENV} or {CONFIG_ENV}")
    verify_digest(text, env.get(CONFIG_DIGEST_ENV), path or f"${CONFIG_ENV}")
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise ConfigError(f"the config is not valid YAML/JSON: {err}") from None
    if not isinstance(doc, dict):
        raise ConfigError("the config must be a mapping")
    return from_dict(doc)
