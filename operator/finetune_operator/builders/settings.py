"""What the platform team sets for the whole operator (Helm values), as opposed to a user's spec."""
from __future__ import annotations

import dataclasses
import os


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
    work_dir: str = "/var/lib/finetune/work"

    @classmethod
    def from_env(cls) -> "OperatorSettings":
        """FTO_TRAINER_IMAGE and friends (the chart sets them from its values)."""
        return cls(trainer_image=os.environ.get("FTO_TRAINER_IMAGE", cls.trainer_image),
                   metrics_port=int(os.environ.get("FTO_TRAINER_METRICS_PORT", cls.metrics_port)))
