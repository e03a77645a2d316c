"""The FineTuneJob CRD: what a user may ask for, and what the apiserver refuses at the door.

Rules that need the cluster (the Secret exists, the S3 objects exist, the GPU shape fits a node)
are the controller's; everything that can be decided from the object alone is here, so a bad
manifest fails at `kubectl apply` (or in Argo CD's diff) with a message that names the field.
"""
from __future__ import annotations

from . import datasets, manifest
from .schema import (array, boolean, column, conditions, crd_document, dns_label, integer, number, number_map, obj,
                     quantity, rule, s3_object, s3_prefix, sha256_digest, string, string_map, timestamp)

GROUP = "finetune.fto.dev"
VERSION = "v1alpha1"
KIND = "FineTuneJob"
PHASES = ["Pending", "Validating", "Queued", "Running", "Succeeded", "Failed", "Suspended", "Cancelled"]
# Once a job leaves these phases its training inputs are fixed: a changed spec would describe a
# run that did not happen. Lifecycle fields (suspend, cancel, deadlines) stay editable.
EDITABLE_PHASES = ["Pending", "Validating"]
FROZEN_SPEC_FIELDS = ["baseModel", "dataset", "credentials", "method", "training", "evaluation", "resources",
                      "output", "dataSafety"]
DATASET_FORMATS = ["instruction", "chat", "promptCompletion", "text"]
ARCHITECTURES = ["llama", "mistral", "mixtral", "qwen2", "qwen3", "gemma", "gemma2", "phi3", "gpt2", "gpt_neox",
                 "falcon", "opt", "auto"]


def base_model() -> dict:
    return obj("spec.baseModel: the model to fine-tune. Exactly one of uri or pvc says where its weights are.", {
        "name": dns_label("spec.baseModel.name: a short name for the model (e.g. smollm2-135m-instruct); it labels "
                          "metrics and lineage.", "spec.baseModel.name"),
        "uri": s3_prefix("spec.baseModel.uri: s3:// prefix of a Hugging Face-format model folder (config.json, "
                         "*.safetensors, tokenizer files).", "spec.baseModel.uri"),
        "pvc": obj("spec.baseModel.pvc: a PersistentVolumeClaim in the same namespace holding the model folder.", {
            "claimName": dns_label("spec.baseModel.pvc.claimName: the claim's name.", "spec.baseModel.pvc.claimName",
                                   max_length=253),
            "path": string("spec.baseModel.pvc.path: folder inside the volume (default: its root).", max_length=1024,
                           default="/"),
        }, required=["claimName"]),
        "revision": string("spec.baseModel.revision: a free-form revision label recorded in lineage (e.g. a git "
                           "tag of the weights).", max_length=128),
        "digest": sha256_digest("spec.baseModel.digest: expected sha256 of the weights manifest; when set, the "
                                "trainer refuses weights with another digest.", "spec.baseModel.digest"),
        "architecture": string("spec.baseModel.architecture: model family, used to pick default LoRA target "
                               "modules; auto reads it from config.json.", enum=ARCHITECTURES, default="auto"),
    }, required=["name"], rules=[
        rule("has(self.uri) != has(self.pvc)",
             "spec.baseModel needs exactly one of uri (s3://...) or pvc (claimName) to say where the weights are"),
    ])


def dataset() -> dict:
    return obj("spec.dataset: the training data and how to read it.", {
        "uri": s3_object("spec.dataset.uri: s3:// URI of the training data: a .jsonl file (one JSON object per line) "
                         "or a .parquet file.", "spec.dataset.uri"),
        "validationUri": s3_object("spec.dataset.validationUri: separate validation data, same format. Set this or "
                                   "validationSplit, not both.", "spec.dataset.validationUri"),
        "validationSplit": number("spec.dataset.validationSplit: fraction of the training rows held out for "
                                  "validation (0 < x <= 0.5), chosen with spec.training.seed.", minimum=0,
                                  exclusive_minimum=True, maximum=0.5),
        "format": string("spec.dataset.format: what a row is. instruction: instruction/input/response; chat: a "
                         "list of {role, content} messages; promptCompletion: prompt/completion (the completion "
                         "may be JSON); text: plain documents for domain-adaptive training.",
                         enum=DATASET_FORMATS),
        "fileFormat": string("spec.dataset.fileFormat: jsonl or parquet; auto decides by the file extension.",
                             enum=["auto", "jsonl", "parquet"], default="auto"),
        "fields": obj("spec.dataset.fields: column names, when the data does not use the defaults of its format.", {
            "prompt": string("Column with the prompt (promptCompletion; default prompt).", max_length=128),
            "completion": string("Column with the completion (promptCompletion; default completion).", max_length=128),
            "instruction": string("Column with the instruction (instruction; default instruction).", max_length=128),
            "input": string("Column with optional extra input (instruction; default input).", max_length=128),
            "response": string("Column with the response (instruction; default response).", max_length=128),
            "messages": string("Column with the message list (chat; default messages).", max_length=128),
            "system": string("Column with an optional system prompt (any format but text; default system).",
                             max_length=128),
            "text": string("Column with the document (text; default text).", max_length=128),
        }),
        "completionJsonSchema": string("spec.dataset.completionJsonSchema: a JSON Schema (as a string) every "
                                       "completion must satisfy; validated before training and scored after it. "
                                       "Only for promptCompletion.", max_length=16384),
        "maxRows": integer("spec.dataset.maxRows: read at most this many training rows (for trials).", minimum=1,
                           fmt="int64"),
    }, required=["uri", "format"], rules=[
        rule("!(has(self.validationUri) && has(self.validationSplit))",
             "spec.dataset: set validationUri or validationSplit, not both"),
        rule("!has(self.completionJsonSchema) || self.format == 'promptCompletion'",
             "spec.dataset.completionJsonSchema only applies to format promptCompletion",
             field_path=".completionJsonSchema"),
    ])


def credentials() -> dict:
    return obj("spec.credentials: how the trainer and the operator reach S3. Keys come from a Secret, never "
               "inline. Required unless the platform team configured an S3 identity for the namespace: the "
               "operator never reads or deletes a tenant's objects with its own identity.", {
        "secretRef": obj("spec.credentials.secretRef: a Secret in the job's namespace with the S3 keys. It must "
                         "carry the label finetune.fto.dev/credentials: \"true\" (else SecretNotOptedIn), and "
                         "whoever names it must be allowed to get it.", {
            "name": string("The Secret's name.", max_length=253),
            "accessKeyIdKey": string("Key holding the access key id.", max_length=253, default="AWS_ACCESS_KEY_ID"),
            "secretAccessKeyKey": string("Key holding the secret key.", max_length=253,
                                         default="AWS_SECRET_ACCESS_KEY"),
            "sessionTokenKey": string("Optional key holding a session token.", max_length=253),
        }, required=["name"]),
        "endpoint": string("spec.credentials.endpoint: a custom S3 endpoint (MinIO, Ceph), e.g. "
                           "http://minio.storage:9000. Unset means AWS.", max_length=512, rules=[
                               rule(r"self.matches('^https?://[^/\\s]+/?$')",
                                    "spec.credentials.endpoint must be http(s)://host[:port] with no path")]),
        "region": string("spec.credentials.region: the S3 region.", max_length=64, default="us-east-1"),
    }, required=["secretRef"])


def method() -> dict:
    lora = obj("spec.method.lora: LoRA settings (lora and qlora only).", {
        "r": integer("spec.method.lora.r: rank of the update matrices; higher learns more and costs more.",
                     minimum=1, maximum=512, default=16),
        "alpha": integer("spec.method.lora.alpha: scaling; the update is scaled by alpha/r.", minimum=1,
                         maximum=4096, default=32),
        "dropout": number("spec.method.lora.dropout: dropout on the LoRA input (0 <= x < 1).", minimum=0, maximum=1,
                          exclusive_maximum=True, default=0.05),
        "targetModules": array("spec.method.lora.targetModules: module names to adapt, or [all-linear]. Unset: "
                               "the architecture's attention and MLP projections (see docs/api.md).",
                               string("A module name, e.g. q_proj.", max_length=128), max_items=64, min_items=1),
        "bias": string("spec.method.lora.bias: which biases to train.", enum=["none", "all", "lora_only"],
                       default="none"),
        "useRslora": boolean("spec.method.lora.useRslora: rank-stabilised scaling alpha/sqrt(r).", default=False),
        "useDora": boolean("spec.method.lora.useDora: weight-decomposed LoRA (DoRA).", default=False),
    })
    qlora = obj("spec.method.quantization: 4-bit loading of the base model (qlora only).", {
        "quantType": string("spec.method.quantization.quantType: nf4 (normal-float, the QLoRA default) or fp4.",
                            enum=["nf4", "fp4"], default="nf4"),
        "doubleQuant": boolean("spec.method.quantization.doubleQuant: also quantise the quantisation constants "
                               "(saves ~0.4 bit/param).", default=True),
        "computeDtype": string("spec.method.quantization.computeDtype: dtype of the matmuls.",
                               enum=["bfloat16", "float16"], default="bfloat16"),
    })
    return obj("spec.method: how the model is adapted.", {
        "type": string("spec.method.type: lora (adapters on a full-precision model), qlora (adapters on a 4-bit "
                       "NF4 model; needs GPUs) or full (all weights; small models only).",
                       enum=["lora", "qlora", "full"], default="lora"),
        "lora": lora,
        "quantization": qlora,
    }, default={"type": "lora"}, rules=[
        rule("self.type != 'full' || !has(self.lora)",
             "spec.method.lora only applies to type lora or qlora: remove it or change spec.method.type",
             field_path=".lora"),
        rule("self.type == 'qlora' || !has(self.quantization)",
             "spec.method.quantization only applies to type qlora", field_path=".quantization"),
    ])


def training() -> dict:
    return obj("spec.training: hyper-parameters. Unset fields take the defaults shown.", {
        "epochs": number("spec.training.epochs: passes over the data (may be fractional). Set epochs or maxSteps, "
                         "not both; neither means 1 epoch.", minimum=0, exclusive_minimum=True, maximum=1000),
        "maxSteps": integer("spec.training.maxSteps: stop after this many optimiser steps.", minimum=1,
                            maximum=10_000_000),
        "learningRate": number("spec.training.learningRate: peak learning rate (LoRA typically 1e-4 to 3e-4; full "
                               "fine-tuning 1e-5 or less).", minimum=0, exclusive_minimum=True, maximum=1,
                               default=0.0002),
        "lrScheduler": string("spec.training.lrScheduler: shape of the learning rate over training.",
                              enum=["cosine", "linear", "constant", "constant_with_warmup"], default="cosine"),
        "warmupRatio": number("spec.training.warmupRatio: fraction of steps spent warming up. Set this or "
                              "warmupSteps.", minimum=0, maximum=0.5),
        "warmupSteps": integer("spec.training.warmupSteps: steps spent warming up.", minimum=0),
        "batchSize": integer("spec.training.batchSize: examples per GPU (or per process on CPU) per micro-step.",
                             minimum=1, maximum=4096, default=4),
        "gradientAccumulationSteps": integer("spec.training.gradientAccumulationSteps: micro-steps per optimiser "
                                             "step; effective batch = batchSize x this x processes.", minimum=1,
                                             maximum=4096, default=1),
        "maxSeqLength": integer("spec.training.maxSeqLength: tokens per example (longer rows are flagged by "
                                "validation and truncated).", minimum=16, maximum=1_048_576, default=1024),
        "packing": boolean("spec.training.packing: pack short examples into full-length sequences so no compute "
                           "is spent on padding.", default=False),
        "distributedStrategy": string("spec.training.distributedStrategy: how processes share the work when "
                                      "nodes x GPUs > 1. ddp replicates the model in every process (fastest when "
                                      "it fits); fsdp shards parameters, gradients and optimiser state across "
                                      "processes, for models that do not fit on one GPU.", enum=["ddp", "fsdp"],
                                      default="ddp"),
        "gradientCheckpointing": boolean("spec.training.gradientCheckpointing: recompute activations in the "
                                         "backward pass; less memory, ~30% slower.", default=False),
        "weightDecay": number("spec.training.weightDecay: AdamW weight decay.", minimum=0, maximum=1, default=0),
        "maxGradNorm": number("spec.training.maxGradNorm: gradient clipping norm; 0 disables clipping.",
                              minimum=0, default=1.0),
        "precision": string("spec.training.precision: compute precision; auto is bf16 where the GPU supports it, "
                            "else fp16 on GPU and fp32 on CPU.", enum=["auto", "bf16", "fp16", "fp32"],
                            default="auto"),
        "seed": integer("spec.training.seed: seeds data order, splits and initialisation.", minimum=0,
                        default=42, fmt="int64"),
        "evalEverySteps": integer("spec.training.evalEverySteps: evaluate on the validation set every N steps "
                                  "(and at the end).", minimum=1, default=50),
        "checkpointEverySteps": integer("spec.training.checkpointEverySteps: save a resumable checkpoint to S3 "
                                        "every N steps.", minimum=1, default=100),
        "keepCheckpoints": integer("spec.training.keepCheckpoints: how many recent checkpoints to keep.",
                                   minimum=1, maximum=100, default=3),
        "earlyStopping": obj("spec.training.earlyStopping: stop when the metric stops improving; the best "
                             "checkpoint is kept. Needs validation data.", {
                                 "metric": string("Metric to watch (lower is better for both).",
                                                  enum=["eval_loss", "eval_perplexity"], default="eval_loss"),
                                 "patience": integer("Evaluations without improvement before stopping.",
                                                     minimum=1, maximum=1000, default=3),
                                 "minDelta": number("Smallest change that counts as an improvement.", minimum=0,
                                                    default=0),
                             }),
    }, default={}, rules=[
        rule("!(has(self.epochs) && has(self.maxSteps))",
             "spec.training: set epochs or maxSteps, not both"),
        rule("!(has(self.warmupRatio) && has(self.warmupSteps))",
             "spec.training: set warmupRatio or warmupSteps, not both"),
        rule("!has(self.maxSteps) || !has(self.warmupSteps) || self.warmupSteps < self.maxSteps",
             "spec.training.warmupSteps must be smaller than spec.training.maxSteps", field_path=".warmupSteps"),
    ])


def evaluation() -> dict:
    return obj("spec.evaluation: checks run on generated answers after training, for the adapter and for the base "
               "model (adapter disabled), recorded as metrics in the manifest.", {
        "samples": integer("spec.evaluation.samples: held-out validation prompts to generate answers for (0 "
                           "turns generation checks off). Scores: exact_match, format_compliance (with "
                           "spec.dataset.completionJsonSchema), regex_match (with answerRegex).", minimum=0,
                           maximum=1000, default=16),
        "answerRegex": string("spec.evaluation.answerRegex: a regular expression every answer should fully match "
                              "(Python re syntax; the trainer gives each answer's match a time bound, see docs/trainer.md).",
                              max_length=1024),
        "regressionUri": s3_object("spec.evaluation.regressionUri: a promptCompletion JSONL of general prompts; "
                                   "its loss is measured for the base model and the adapter, so catastrophic "
                                   "forgetting shows as regression_loss rising above base_regression_loss.",
                                   "spec.evaluation.regressionUri"),
    }, default={})


# Kubernetes' label key (an optional DNS-subdomain prefix, then a name) and label value syntax, as RE2.
LABEL_KEY_RE = (r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
                r"[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")
DNS_SUBDOMAIN_RE = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
LABEL_VALUE_RE = r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$"


def label_key(description: str, field: str) -> dict:
    return string(description, max_length=316, rules=[rule(
        f"self.matches('{LABEL_KEY_RE}')",
        f"{field} must be a label key: [prefix/]name, the name alphanumeric with '-', '_' or '.' inside")])


def label_value(description: str, field: str) -> dict:
    return string(description, max_length=63, rules=[rule(
        f"self.matches('{LABEL_VALUE_RE}')",
        f"{field} must be a label value: empty, or alphanumeric with '-', '_' or '.' inside")])


def toleration() -> dict:
    f = "spec.resources.tolerations[]"
    return obj("A toleration, as in a pod spec. It needs a key: a keyless Exists would tolerate every taint.", {
        "key": label_key("Taint key to tolerate.", f + ".key"),
        "operator": string("Exists or Equal.", enum=["Exists", "Equal"], default="Equal"),
        "value": label_value("Taint value (with Equal).", f + ".value"),
        "effect": string("Taint effect; empty means all.", enum=["", "NoSchedule", "PreferNoSchedule", "NoExecute"]),
        "tolerationSeconds": integer("How long a NoExecute taint is tolerated.", fmt="int64"),
    }, rules=[
        rule("has(self.key) && self.key != ''",
             f"{f}.key is required: a toleration with no key (operator Exists) tolerates every taint, the "
             "control plane's and unreachable nodes' included"),
        rule("self.operator != 'Exists' || !has(self.value) || self.value == ''",
             f"{f}.value must be empty with operator Exists", field_path=".value"),
        rule("!has(self.tolerationSeconds) || (has(self.effect) && self.effect == 'NoExecute')",
             f"{f}.tolerationSeconds only applies to effect NoExecute", field_path=".tolerationSeconds"),
    ])


def _selector_requirement(what: str, operators: list) -> dict:
    return obj(f"A {what} requirement: key, operator and values.", {
        "key": label_key("The label key (for matchFields, a field such as metadata.name).", f"{what}.key"),
        "operator": string("How the key's value is compared.", enum=operators),
        "values": array("The values (In, NotIn: one or more; Gt, Lt: one integer; Exists, DoesNotExist: none).",
                        string("A value.", max_length=63), max_items=64),
    }, required=["key", "operator"])


def _node_selector_term() -> dict:
    req = _selector_requirement("node selector", ["In", "NotIn", "Exists", "DoesNotExist", "Gt", "Lt"])
    return obj("A node selector term: all its requirements must hold.", {
        "matchExpressions": array("Requirements on node labels.", req, max_items=16),
        "matchFields": array("Requirements on node fields.", req, max_items=16),
    })


def _pod_affinity_term() -> dict:
    req = _selector_requirement("label selector", ["In", "NotIn", "Exists", "DoesNotExist"])
    return obj("Pods (of this job's namespace only: namespaces and namespaceSelector are not accepted) near which "
               "the trainer pods should (or should not) run.", {
        "labelSelector": obj("Which pods.", {
            "matchLabels": string_map("Labels the pods must have.", max_properties=16, value_max_length=63),
            "matchExpressions": array("Requirements on the pods' labels.", req, max_items=16),
        }),
        "topologyKey": label_key("Node label whose value defines 'near' (e.g. kubernetes.io/hostname).",
                                 "topologyKey"),
        "matchLabelKeys": array("Pod label keys whose values are added to labelSelector.",
                                string("A label key.", max_length=316), max_items=16),
        "mismatchLabelKeys": array("Pod label keys whose values must differ.", string("A label key.", max_length=316),
                                   max_items=16),
    }, required=["topologyKey"])


def _pod_affinity(what: str) -> dict:
    term = _pod_affinity_term()
    return obj(f"{what}: as in a pod spec.", {
        "requiredDuringSchedulingIgnoredDuringExecution": array("Terms that must hold.", term, max_items=16),
        "preferredDuringSchedulingIgnoredDuringExecution": array("Weighted terms that should hold.", obj(
            "A weighted term.", {"weight": integer("1-100.", minimum=1, maximum=100), "podAffinityTerm": term},
            required=["weight", "podAffinityTerm"]), max_items=16),
    })


def affinity() -> dict:
    term = _node_selector_term()
    return obj("spec.resources.affinity: a core/v1 Affinity for the trainer pods, checked field by field. The "
               "platform team may limit which node labels it uses (docs/api.md, Scheduling).", {
        "nodeAffinity": obj("Node affinity: as in a pod spec.", {
            "requiredDuringSchedulingIgnoredDuringExecution": obj("Nodes must match one of these terms.", {
                "nodeSelectorTerms": array("The terms (ORed).", term, max_items=16, min_items=1),
            }, required=["nodeSelectorTerms"]),
            "preferredDuringSchedulingIgnoredDuringExecution": array("Weighted terms nodes should match.", obj(
                "A weighted term.", {"weight": integer("1-100.", minimum=1, maximum=100), "preference": term},
                required=["weight", "preference"]), max_items=16),
        }),
        "podAffinity": _pod_affinity("spec.resources.affinity.podAffinity"),
        "podAntiAffinity": _pod_affinity("spec.resources.affinity.podAntiAffinity"),
    })


def node_selector() -> dict:
    node = string_map("spec.resources.nodeSelector: labels the trainer's nodes must have. The platform team may "
                      "limit which label keys are allowed (docs/api.md, Scheduling).", max_properties=32,
                      value_max_length=63)
    node["x-kubernetes-validations"] = [
        rule(f"self.all(k, size(k) <= 316 && k.matches('{LABEL_KEY_RE}'))",
             "spec.resources.nodeSelector keys must be label keys: [prefix/]name, at most 316 characters"),
        rule(f"self.all(k, self[k].matches('{LABEL_VALUE_RE}'))",
             "spec.resources.nodeSelector values must be label values: empty, or alphanumeric with '-', '_' or '.' "
             "inside"),
    ]
    return node


def resources() -> dict:
    toleration_ = toleration()
    return obj("spec.resources: where and on how much hardware the trainer runs.", {
        "gpusPerNode": integer("spec.resources.gpusPerNode: nvidia.com/gpu per trainer pod (one pod per node); 0 "
                               "trains on CPU.", minimum=0, maximum=16, default=1),
        "nodes": integer("spec.resources.nodes: trainer pods (nodes) for distributed data-parallel training via "
                         "torchrun.", minimum=1, maximum=256, default=1),
        "cpu": quantity("spec.resources.cpu: CPU request per trainer pod (e.g. 8)."),
        "memory": quantity("spec.resources.memory: memory request and limit per trainer pod (e.g. 64Gi)."),
        "gpuProduct": string("spec.resources.gpuProduct: shortcut for nodeSelector nvidia.com/gpu.product (e.g. "
                             "NVIDIA-H100-80GB-HBM3).", max_length=128),
        "nodeSelector": node_selector(),
        "affinity": affinity(),
        "tolerations": array("spec.resources.tolerations: taints the trainer pods tolerate (GPU pools are often "
                             "tainted).", toleration_, max_items=32),
        "priorityClassName": string("spec.resources.priorityClassName: PriorityClass of the trainer pods. The "
                                    "platform team lists the classes each namespace may use (docs/api.md, "
                                    "Scheduling).", max_length=253, rules=[rule(
                                        f"self.matches('{DNS_SUBDOMAIN_RE}')",
                                        "spec.resources.priorityClassName must be a PriorityClass name (a DNS "
                                        "subdomain)")]),
        "queueName": string("spec.resources.queueName: a Kueue LocalQueue; the Job is created suspended and Kueue "
                            "admits it.", max_length=63),
    }, default={})


def lifecycle() -> dict:
    return obj("spec.lifecycle: controlling a job after it is created. These stay editable while it runs.", {
        "suspend": boolean("spec.lifecycle.suspend: true checkpoints and stops the trainer pods; false resumes from "
                           "the checkpoint.", default=False),
        "cancel": boolean("spec.lifecycle.cancel: true stops the job for good (checkpoints are kept; phase "
                          "Cancelled). Cannot be undone.", default=False,
                          rules=[rule("!oldSelf || self",
                                      "spec.lifecycle.cancel cannot be set back to false: a cancelled job stays "
                                      "cancelled; create a new FineTuneJob")]),
        "activeDeadlineSeconds": integer("spec.lifecycle.activeDeadlineSeconds: fail the job (DeadlineExceeded) "
                                         "if it runs longer than this.", minimum=1, fmt="int64"),
        "retryLimit": integer("spec.lifecycle.retryLimit: relaunches after retryable failures (preemption, node "
                              "loss, S3 errors), each resuming from the last checkpoint.", minimum=0, maximum=100,
                              default=3),
        "ttlSecondsAfterFinished": integer("spec.lifecycle.ttlSecondsAfterFinished: delete the job's pods, Jobs "
                                           "and Services this long after it finishes; the FineTuneJob and its "
                                           "status stay.", minimum=0, fmt="int64"),
        "onOutOfMemory": obj("spec.lifecycle.onOutOfMemory: what an out-of-memory failure (CUDA OOM or the pod "
                             "OOM-killed) does.", {
            "action": string("Fail: the job fails with OutOfMemory (the default: a relaunch with the same batch "
                             "would run out of memory again). SplitMicroBatch: relaunch from the last checkpoint "
                             "with each micro-batch split in two and processed one part at a time, which halves "
                             "activation memory; the gradient of every step, the step count and the data order "
                             "stay exactly as configured, so the checkpoint resumes as is. Each further OOM "
                             "splits again, up to maxSplit. Each relaunch counts against retryLimit.",
                             enum=["Fail", "SplitMicroBatch"], default="Fail"),
            "maxSplit": integer("The most parts a micro-batch is split into (a power of two is reached by "
                                "doubling; the last split is capped here). A micro-batch of batchSize rows "
                                "cannot split into more than batchSize parts.", minimum=2, maximum=64, default=8),
        }, default={}),
        "cleanupOnDelete": string("spec.lifecycle.cleanupOnDelete: what deleting the FineTuneJob removes from "
                                  "S3 under spec.output.uri. Keep (or unset): nothing, and the job carries no "
                                  "finalizer. Checkpoints: the checkpoints/ prefix. All: everything under the "
                                  "output prefix, except the adapter and manifest.json while a ModelVersion "
                                  "registered from this job exists. Checkpoints and All put a finalizer on the "
                                  "job, so deleting it waits for the operator: it stops the trainer pods first, "
                                  "then deletes the objects.", enum=["Keep", "Checkpoints", "All"]),
    }, default={})


def register_model_version() -> dict:
    return obj("spec.output.registerModelVersion: on success, create this ModelVersion for the adapter (it is not "
               "owned by the job: deleting the job keeps the served model's record).", {
        "model": dns_label("The logical model name (e.g. support-bot).", "spec.output.registerModelVersion.model"),
        "version": dns_label("The version; default: the FineTuneJob's name.",
                             "spec.output.registerModelVersion.version"),
        "stage": string("Stage to ask for once registered: candidate, or production (promote automatically if "
                        "the gates pass).", enum=["candidate", "production"], default="candidate"),
        "servingTarget": serving_target("spec.output.registerModelVersion.servingTarget"),
        "gates": gates("spec.output.registerModelVersion.gates"),
    }, required=["model"])


def serving_target(path: str) -> dict:
    return obj(f"{path}: the inference pods (same namespace) whose adapter agents serve this model.", {
        "selector": obj("Label selector of the inference pods.", {
            "matchLabels": string_map("Labels the pods must all have.", max_properties=16),
        }, required=["matchLabels"]),
        "port": integer("Port of the adapter agent's admin API on each pod.", minimum=1, maximum=65535,
                        default=8001),
        "adminTokenSecretRef": obj("Secret holding the admin API's bearer token.", {
            "name": string("The Secret's name.", max_length=253),
            "key": string("The key in it.", max_length=253, default="token"),
        }, required=["name"]),
    }, required=["selector"])


def gates(path: str) -> dict:
    metric_gate = obj("A threshold on one evaluation metric.", {
        "metric": string("Metric name from the training manifest (e.g. eval_loss, format_compliance).",
                         max_length=128),
        "min": number("The metric must be >= this."),
        "max": number("The metric must be <= this."),
    }, required=["metric"], rules=[rule("has(self.min) || has(self.max)",
                                        f"each of {path}.metrics needs min or max")])
    return obj(f"{path}: conditions a version must meet before it may become production.", {
        "metrics": array("Thresholds on metrics from the training manifest.", metric_gate, max_items=16),
        "mustBeatProduction": obj("The version must beat the current production version on this metric, "
                                  "measured on the same evaluation set.", {
                                      "metric": string("Metric to compare.", max_length=128),
                                      "higherIsBetter": boolean("Direction of the metric.", default=False),
                                      "minImprovement": number("Required margin.", minimum=0, default=0),
                                  }, required=["metric"]),
    })


SAFETY_ACTIONS_REDACT = ["Fail", "Redact", "Warn", "Off"]
SAFETY_ACTIONS_DROP = ["Fail", "Drop", "Warn", "Off"]
SAFETY_CHECKS = ["pii", "secrets", "specialTokens", "nearDuplicates", "leakage", "cleaning", "moderation"]


def _safety_action(field: str, actions: list, default: str, what: str) -> dict:
    return string(f"spec.dataSafety.{field}.action: what a finding does. {what} Off skips the check.",
                  enum=actions, default=default)


def _jaccard(field: str) -> dict:
    return number(f"spec.dataSafety.{field}.threshold: MinHash Jaccard similarity (0 < x <= 1) from which two "
                  "rows count as near-duplicates.", minimum=0, exclusive_minimum=True, maximum=1, default=0.9)


def _moderation() -> dict:
    return obj("spec.dataSafety.moderation: an in-cluster OpenAI-compatible moderation endpoint (POST "
               "/v1/moderations) asked about every row. Off by default; the tenant names an endpoint from the "
               "list the platform team configured (Helm value dataSafety.moderationEndpoints), never a URL.", {
        "endpoint": dns_label("spec.dataSafety.moderation.endpoint: the NAME of an endpoint in the operator's "
                              "list; a name not in it is refused before any pod (reason "
                              "ModerationEndpointNotAllowed).", "spec.dataSafety.moderation.endpoint"),
        "action": _safety_action("moderation", SAFETY_ACTIONS_DROP, "Off",
                                 "Fail refuses the dataset; Drop leaves flagged rows out; Warn counts them."),
        "timeoutSeconds": integer("spec.dataSafety.moderation.timeoutSeconds: deadline of one call (a call "
                                  "past it fails validation as a retryable error).", minimum=1, maximum=60,
                                  default=5),
    }, default={}, rules=[
        rule("!has(self.action) || self.action == 'Off' || has(self.endpoint)",
             "spec.dataSafety.moderation.action other than Off needs spec.dataSafety.moderation.endpoint (the "
             "name of an endpoint the platform team configured)", field_path=".endpoint"),
    ])


def data_safety() -> dict:
    """spec.dataSafety: the checks the validate pod runs on every row (finetune_trainer.safety.gate)."""
    return obj("spec.dataSafety: the data-safety gate, run in the validate-only pod on CPU and offline before any "
               "GPU is requested. Absent: no gate. Present (even {}): every check runs with its default action. "
               "Counts and line numbers go to status.datasetStats.safety, never a matched value. Redact, Drop and "
               "cleaning write a transformed copy under spec.output.uri (dataset/<role>.jsonl) and training "
               "reads that copy (its sha256 in lineage, derivedFrom the original). A Fail ends the job with "
               "reason DatasetUnsafe.", {
        "pii": obj("spec.dataSafety.pii: personal data found by Presidio pattern recognizers (email, phone, "
                   "credit card with checksum, IBAN, IP address, national ids).", {
            "action": _safety_action("pii", SAFETY_ACTIONS_REDACT, "Warn",
                                     "Fail refuses the dataset; Redact replaces each value with <ENTITY_TYPE>; "
                                     "Warn counts it."),
            "entities": array("spec.dataSafety.pii.entities: entity types to look for (e.g. EMAIL_ADDRESS, "
                              "PHONE_NUMBER); empty: EMAIL_ADDRESS, PHONE_NUMBER, CREDIT_CARD, IBAN_CODE, "
                              "IP_ADDRESS and US_SSN (the other national-id patterns also match ordinary "
                              "order numbers, so they are opt-in).",
                              string("A Presidio entity type.", max_length=64, pattern="^[A-Z][A-Z0-9_]*$"),
                              max_items=32),
            "minScore": number("spec.dataSafety.pii.minScore: Presidio score (0..1) from which a match counts. "
                               "Without Presidio's NLP context boost (not used: it needs a downloaded model) phone "
                               "numbers score 0.4, so a higher value skips them.", minimum=0, maximum=1,
                               default=0.4),
        }, default={}),
        "secrets": obj("spec.dataSafety.secrets: credentials found by detect-secrets plugins (cloud keys, tokens, "
                       "private keys, high-entropy strings).", {
            "action": _safety_action("secrets", SAFETY_ACTIONS_REDACT, "Warn",
                                     "Fail refuses the dataset; Redact replaces each value with a placeholder; "
                                     "Warn counts it."),
        }, default={}),
        "specialTokens": obj("spec.dataSafety.specialTokens: the base model's own special/control tokens (e.g. "
                             "the chat template's role markers) written inside row text.", {
            "action": _safety_action("specialTokens", SAFETY_ACTIONS_DROP, "Fail",
                                     "Fail refuses the dataset; Drop leaves such rows out; Warn counts them."),
        }, default={}),
        "nearDuplicates": obj("spec.dataSafety.nearDuplicates: training rows whose prompt/user turn near-duplicates "
                              "an earlier training row (MinHash LSH).", {
            "action": _safety_action("nearDuplicates", SAFETY_ACTIONS_DROP, "Warn",
                                     "Fail refuses the dataset; Drop keeps only the first; Warn counts them."),
            "threshold": _jaccard("nearDuplicates"),
        }, default={}),
        "leakage": obj("spec.dataSafety.leakage: validation or regression rows that near-duplicate a training row "
                       "(the held-out score would be inflated).", {
            "action": _safety_action("leakage", SAFETY_ACTIONS_DROP, "Fail",
                                     "Fail refuses the dataset; Drop leaves the leaking held-out rows out; Warn "
                                     "counts them."),
            "threshold": _jaccard("leakage"),
        }, default={}),
        "cleaning": obj("spec.dataSafety.cleaning: optional transformations of every row; each changed or dropped "
                        "row goes into the transformed copy.", {
            "stripHtml": boolean("Remove HTML tags (and decode entities) from message text.", default=False),
            "unicodeNfc": boolean("Normalise text to Unicode NFC.", default=False),
            "dropExactDuplicates": boolean("Drop rows identical to an earlier row of the same role (after the "
                                           "other cleaning).", default=False),
            "dropNearDuplicates": boolean("Drop training rows that near-duplicate an earlier training row (as "
                                          "nearDuplicates.action Drop).", default=False),
        }, default={}),
        "moderation": _moderation(),
        "maxLinesReported": integer("spec.dataSafety.maxLinesReported: line numbers kept per check in status and "
                                    "messages (1-20).", minimum=1, maximum=20, default=10),
    })


def output() -> dict:
    return obj("spec.output: where the result goes.", {
        "uri": s3_prefix("spec.output.uri: s3:// prefix for the adapter, its manifest and checkpoints "
                         "(<uri>/adapter/, <uri>/manifest.json, <uri>/checkpoints/).", "spec.output.uri"),
        "registerModelVersion": register_model_version(),
    }, required=["uri"])


def spec() -> dict:
    gpu_need = ("self.method.type != 'qlora' || self.resources.gpusPerNode >= 1")
    return obj("FineTuneJob spec: the desired fine-tune. The operator never writes it.", {
        "baseModel": base_model(),
        "dataset": dataset(),
        "credentials": credentials(),
        "method": method(),
        "training": training(),
        "evaluation": evaluation(),
        "resources": resources(),
        "lifecycle": lifecycle(),
        "output": output(),
        "dataSafety": data_safety(),
    }, required=["baseModel", "dataset", "output"], rules=[
        rule(gpu_need, "spec.method.type qlora needs GPUs: set spec.resources.gpusPerNode >= 1 (bitsandbytes 4-bit "
             "kernels run only on CUDA) or use method lora", field_path=".resources.gpusPerNode"),
        rule("!has(self.training.earlyStopping) || has(self.dataset.validationUri) || "
             "has(self.dataset.validationSplit)",
             "spec.training.earlyStopping needs validation data: set spec.dataset.validationUri or "
             "spec.dataset.validationSplit", field_path=".training.earlyStopping"),
        rule("self.resources.nodes == 1 || self.resources.gpusPerNode >= 1",
             "spec.resources.nodes > 1 needs GPUs: set spec.resources.gpusPerNode >= 1",
             field_path=".resources.nodes"),
        rule("!has(self.baseModel.pvc) || self.resources.nodes == 1",
             "spec.baseModel.pvc only works with spec.resources.nodes 1 (a claim is mounted by one node); "
             "use spec.baseModel.uri for multi-node jobs", field_path=".baseModel.pvc"),
    ])


def _role_counts(description: str) -> dict:
    return obj(description, {r: integer(f"{r} rows.", minimum=0, fmt="int64")
                             for r in ("train", "validation", "regression")})


def safety_status() -> dict:
    """status.datasetStats.safety: what the gate found, as counts and line numbers only."""
    check = obj("One check's findings: counts and line numbers, never a matched value.", {
        "rows": integer("Rows with a finding.", minimum=0, fmt="int64"),
        "entities": {"type": "object", "description": "Findings by entity or secret type (e.g. EMAIL_ADDRESS: 2).",
                     "maxProperties": 64, "additionalProperties": {"type": "integer", "format": "int64"}},
        "lines": array("The first line numbers with a finding (up to spec.dataSafety.maxLinesReported), in the "
                       "object the row came from.", integer("A line number.", minimum=0, fmt="int64"), max_items=20),
        "trainLines": array("leakage: the training lines the held-out rows duplicate.",
                            integer("A line number.", minimum=0, fmt="int64"), max_items=20),
        "action": string("The action applied (Fail, Redact, Drop, Warn).", max_length=16),
        "byRole": _role_counts("Rows with a finding per role, when not only training rows had one."),
    })
    return obj("What spec.dataSafety found (counts by check and entity type, up to maxLinesReported line numbers "
               "per check; never a value), and the rows each role's transformed copy changed or dropped.",
               {**{name: check for name in SAFETY_CHECKS},
                "changed": _role_counts("Rows transformed or dropped, per role."),
                "dropped": _role_counts("Rows dropped, per role.")})


def status() -> dict:
    checkpoint = obj("A saved, resumable checkpoint.", {
        "step": integer("Optimiser step.", minimum=0, fmt="int64"),
        "uri": string("Where it is.", max_length=1024),
        "digest": string("sha256 over its files (trainable.safetensors, training_state.pt, state.json) as the "
                         "trainer wrote them (finetune_api.resume). A relaunch resumes only from the newest "
                         "checkpoint recorded here, and only if its files still have this digest.",
                         max_length=71, pattern="^sha256:[0-9a-f]{64}$"),
        "evalLoss": number("Validation loss at this step, if evaluated."),
        "savedAt": timestamp("When it was saved."),
    })
    return obj("FineTuneJob status, written only by the operator.", {
        "observedGeneration": integer("The metadata.generation the status reflects.", fmt="int64"),
        "phase": string("Where the job is: Pending, Validating, Queued, Running, Succeeded, Failed, Suspended or "
                        "Cancelled.", enum=PHASES),
        "reason": string("A CamelCase reason for the phase, e.g. DatasetInvalid, DatasetUnsafe, "
                         "ModerationEndpointNotAllowed, CredentialsMissing, "
                         "CredentialsRequired, SecretNotOptedIn, SchedulingNotAllowed, CheckpointMismatch, "
                         "DeadlineExceeded, BackoffLimitExceeded.", max_length=128),
        "message": string("The reason in plain words.", max_length=32768),
        "conditions": conditions("Conditions: Validated (the dataset passed the validate-only pod; False with "
                                 "ChildNameConflict while an object not owned by the job holds a child's name), "
                                 "Running (an "
                                 "attempt's trainer is running; False with the reason it is not: WaitingForCapacity, "
                                 "WaitingForKueue, Retrying, Resumed, Training while its pods start), Suspended, "
                                 "Succeeded (the summary: True once the adapter is verified; False with the reason "
                                 "once the job failed or was cancelled, reason Cancelled), and ReconcileError (True "
                                 "while the operator's last pass failed unexpectedly). The phase is derived from "
                                 "them."),
        "startTime": timestamp("When training first started."),
        "completionTime": timestamp("When the job reached a terminal phase."),
        "progress": obj("Training progress, refreshed every few seconds while running.", {
            "step": integer("Optimiser steps done.", minimum=0, fmt="int64"),
            "totalSteps": integer("Optimiser steps planned.", minimum=0, fmt="int64"),
            "epoch": number("Epochs done (fractional)."),
            "percent": integer("step / totalSteps in percent.", minimum=0, maximum=100),
            "display": string("step/totalSteps, for kubectl get.", max_length=64),
            "trainLoss": number("Latest training loss."),
            "evalLoss": number("Latest validation loss."),
            "tokensPerSecond": number("Training throughput, all processes."),
            "etaSeconds": integer("Estimated seconds left.", fmt="int64"),
            "updatedAt": timestamp("When progress was last read."),
            "history": array("Loss curve: one point per step seen, thinned to at most 200 points (kubectl "
                             "finetune plot draws it).", obj("A point.", {
                                 "step": integer("Step.", minimum=0, fmt="int64"),
                                 "trainLoss": number("Training loss."),
                                 "evalLoss": number("Validation loss."),
                             }), max_items=200),
        }),
        "checkpoints": array("Checkpoints kept in S3, newest last.", checkpoint, max_items=100),
        "attempts": integer("Trainer launches so far (1 + retries).", minimum=0),
        "lastFailure": obj("The most recent failed attempt.", {
            "reason": string("CamelCase reason (e.g. Preempted, NodeLost, OOMKilled, S3Unavailable).",
                             max_length=128),
            "message": string("What happened.", max_length=32768),
            "retryable": boolean("Whether it was retried."),
            "time": timestamp("When."),
        }),
        "gpuSeconds": number("GPU time used by all attempts (GPUs x seconds)."),
        "gpuSecondsUpdatedAt": timestamp("Until when gpuSeconds is counted."),
        "microBatchSplit": integer("Parts each micro-batch is split into by spec.lifecycle.onOutOfMemory "
                                   "(1: not split).", minimum=1),
        "nextAttemptAfter": integer("After a retryable failure: Unix time before which the next attempt does not "
                                    "start (exponential backoff).", fmt="int64"),
        "childrenDeletedAt": timestamp("When spec.lifecycle.ttlSecondsAfterFinished deleted the pods, Jobs, "
                                       "Services and ConfigMap."),
        "trainerJob": string("Name of the batch/v1 Job running the trainer.", max_length=253),
        "validationPod": string("Name of the validate-only pod.", max_length=253),
        "datasetStats": obj("What validation found in the dataset.", {
            "rows": integer("Training rows.", fmt="int64"),
            "validationRows": integer("Validation rows.", fmt="int64"),
            "tokens": integer("Training tokens.", fmt="int64"),
            "rowsOverMaxSeqLength": integer("Rows longer than maxSeqLength (truncated).", fmt="int64"),
            "duplicateRows": integer("Exact duplicate rows.", fmt="int64"),
            "safety": safety_status(),
            "sources": datasets.schema("The dataset objects validation checked, by sha256 (and VersionId on a "
                                       "versioned bucket); the trainer refuses any other content "
                                       "(DatasetChanged)."),
        }),
        "result": obj("The trained adapter, once Succeeded.", {
            "adapterUri": string("s3:// prefix of the adapter files.", max_length=1024),
            "manifestUri": string("s3:// URI of the result manifest.", max_length=1024),
            "adapterDigest": string(manifest.DIGEST_DOC, max_length=71),
            "metrics": number_map("Final metrics (eval_loss, perplexity, task scores, ...)."),
            "steps": integer("Optimiser steps trained.", fmt="int64"),
            "tokens": integer("Tokens trained on.", fmt="int64"),
            "wallSeconds": number("Training wall time."),
        }),
        "lineage": obj("Where the result came from.", {
            "datasetUri": string("Training data.", max_length=1024),
            "datasetEtag": string("Its S3 ETag at training time (kept for compatibility; not a content "
                                  "digest for multipart uploads: see datasets).", max_length=128),
            "datasets": datasets.schema("Every dataset object the adapter was trained and evaluated on "
                                        "(training, validation, regression, and transformed copies), by sha256."),
            "baseModelDigest": string("Digest of the base model's weights.", max_length=71),
            "configHash": string("sha256 of the rendered trainer config.", max_length=71),
            "trainerImage": string("Trainer image.", max_length=512),
        }),
        "modelVersion": string("Name of the ModelVersion registered for the result.", max_length=253),
    })


def crd() -> dict:
    frozen = " && ".join(f"self.spec.{f} == oldSelf.spec.{f}" if f in ("method", "training", "evaluation", "resources")
                         else f"((has(self.spec.{f}) && has(oldSelf.spec.{f}) && self.spec.{f} == oldSelf.spec.{f})"
                              f" || (!has(self.spec.{f}) && !has(oldSelf.spec.{f})))"
                         for f in FROZEN_SPEC_FIELDS)
    started = ("has(oldSelf.status) && has(oldSelf.status.phase) && !(oldSelf.status.phase in "
               f"{EDITABLE_PHASES!r})").replace('"', "'")
    root = obj("FineTuneJob: fine-tune a base model on a dataset in S3 with LoRA, QLoRA or full training, and "
               "optionally register the result as a ModelVersion.", {
                   "apiVersion": string("API version.", max_length=64),
                   "kind": string("Kind.", max_length=64),
                   "metadata": {"type": "object"},
                   "spec": spec(),
                   "status": status(),
               }, required=["spec"], rules=[
                   rule(f"!({started}) || ({frozen})",
                        "spec is immutable once the job has started (phase Queued or later), except "
                        "spec.lifecycle (suspend, cancel, deadlines); create a new FineTuneJob to train "
                        "differently"),
               ])
    return crd_document(GROUP, VERSION, KIND, "finetunejobs", ["ftj", "ftjob"], [
        column("Phase", ".status.phase"),
        column("Progress", ".status.progress.display"),
        column("Loss", ".status.progress.trainLoss", "number"),
        column("Eval", ".status.progress.evalLoss", "number", priority=1),
        column("Model", ".spec.baseModel.name"),
        column("Method", ".spec.method.type"),
        column("Reason", ".status.reason", priority=1),
        column("Age", ".metadata.creationTimestamp", "date"),
    ], root)
