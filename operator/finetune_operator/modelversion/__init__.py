"""The ModelVersion controller: register, gate, promote in two phases (or by canary), converge and
roll back adapters on the serving pods' adapter agents. See docs/modelversion.md."""
from .reconciler import ModelVersionReconciler

__all__ = ["ModelVersionReconciler"]
