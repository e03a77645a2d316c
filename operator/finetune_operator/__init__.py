"""finetune-operator: the Kubernetes controllers for FineTuneJob and ModelVersion (kopf)."""

__version__ = "0.1.0"
