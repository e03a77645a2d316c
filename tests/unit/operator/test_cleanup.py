"""spec.lifecycle.cleanupOnDelete: which finalizer a job carries and what its deletion removes from S3."""
from __future__ import annotations

import pytest

from finetune_operator.cleanup import FINALIZER, describe, finalizers_after, plan

OTHER = "example.com/keep-me"


def spec(mode=None, uri="s3://bucket/out/job/"):
    return {"output": {"uri": uri}, "lifecycle": {"cleanupOnDelete": mode} if mode else {}}


@pytest.mark.parametrize("mode,current,expected", [
    (None, [], None), ("Keep", [OTHER], None),
    ("All", [], [FINALIZER]), ("Checkpoints", [OTHER], [OTHER, FINALIZER]), ("All", [FINALIZER], None),
    ("Keep", [OTHER, FINALIZER], [OTHER]), (None, [FINALIZER], []),
])
def test_the_finalizer_is_there_exactly_when_clean_up_is_asked_for(mode, current, expected):
    assert finalizers_after(current, spec(mode)) == expected


def test_checkpoints_mode_deletes_only_the_checkpoints_prefix():
    p = plan(spec("Checkpoints"), {}, [])
    assert p.deletes("out/job/checkpoints/step-00000010/adapter_model.safetensors")
    assert not p.deletes("out/job/adapter/adapter_model.safetensors") and not p.deletes("out/job/manifest.json")


def test_all_deletes_the_prefix_and_never_a_neighbour_sharing_its_start():
    p = plan(spec("All", "s3://bucket/out/job"), {}, [])
    assert p.prefix == "out/job/"
    assert p.deletes("out/job/manifest.json") and p.deletes("out/job/adapter/adapter_model.safetensors")
    assert not p.deletes("out/job-2/manifest.json") and not p.deletes("out/other/x")


def test_a_registered_model_version_keeps_the_adapter_and_manifest_it_serves():
    # status.result is where the operator records them; a place other than the default layout
    # proves plan reads them rather than guessing.
    status = {"result": {"adapterUri": "s3://bucket/out/job/final/adapter",
                         "manifestUri": "s3://bucket/out/job/final/manifest.json"}}
    p = plan(spec("All"), status, ["bot-v2", "bot-v1"])
    assert not p.deletes("out/job/final/adapter/adapter_model.safetensors")
    assert not p.deletes("out/job/final/manifest.json")
    assert p.deletes("out/job/checkpoints/step-00000001/state.json")
    assert p.deletes("out/job/adapter-old/x")
    assert "ModelVersion bot-v1, bot-v2 was registered from this job" in describe(p, 3)


def test_without_a_recorded_result_the_default_adapter_layout_is_kept():
    p = plan(spec("All"), {}, ["bot-v1"])
    assert not p.deletes("out/job/adapter/adapter_model.safetensors") and not p.deletes("out/job/manifest.json")


def test_an_output_naming_a_whole_bucket_is_never_emptied():
    p = plan(spec("All", "s3://bucket/"), {}, [])
    assert p.refused and "names a whole bucket" in p.refused
    assert not p.deletes("anything")
