"""The public API: the FineTuneJob and ModelVersion CRDs (finetune.fto.dev/v1alpha1).

The schemas are written in Python (finetunejob_crd.py, modelversion_crd.py) and rendered by
crdgen.py into crds/ - the single source the Helm chart and the tests install - and into
docs/api-reference.md. A unit test fails when either is stale.
"""
