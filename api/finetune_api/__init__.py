"""The public API: the FineTuneJob and ModelVersion CRDs (finetune.fto.dev/v1alpha1), and every
contract between the operator, the trainer and the inference agent/engine.

The schemas are written in Python (finetunejob_crd.py, modelversion_crd.py) and rendered by
crdgen.py into crds/ - the single source the Helm chart and the tests install - and into
docs/api-reference.md. A unit test fails when either is stale.

The cross-process contracts, one definition each: manifest.py (the AdapterManifest and its
digest), termination.py (exit codes and the trainer's termination message), progress.py (the
trainer's /progress document), naming.py (served adapter names), s3.py (S3 URIs and error kinds),
digests.py (file and model-folder digests) and defaultmodel.py (the default base model).

Its distribution (api/pyproject.toml, `finetune-api`) depends on PyYAML only; every component
imports it and never another component's package.
"""
