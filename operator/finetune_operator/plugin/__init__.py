"""`kubectl finetune`: FineTuneJobs and ModelVersions from the user's own kubeconfig and RBAC.

Installed as the console script `kubectl-finetune`, which kubectl finds on PATH as a plugin.
"""
from .cli import main

__all__ = ["main"]
