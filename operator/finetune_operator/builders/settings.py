"""What the platform team sets for the whole operator (Helm values), as opposed to a user's spec."""
from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class OperatorSettings:
    trainer_image: str = "finetune-operator/trainer:0.1.0"
    image_pull_policy: str = "IfNotPresent"
    metrics_port: int = 9090
    rendezvous_port: int = 29500
    # Long enough for the trainer to finish a step and upload a checkpoint after SIGTERM.
    termination_grace_seconds: int = 300
    validate_cpu: str = "1"
    validate_memory: str = "2Gi"
    work_dir: str = "/work"
