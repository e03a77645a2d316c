"""Contract B: the validated-datasets record, its compact encoding and what decoding refuses."""
import json

import pytest

from finetune_api import datasets as ds

SHA_A, SHA_B = "a" * 64, "b" * 64


def _src(**kw):
    doc = {"role": "train", "uri": "s3://b/train.jsonl", "sha256": SHA_A, "bytes": 10}
    doc.update(kw)
    return doc


def test_encode_then_decode_round_trips_every_field():
    sources = (ds.DatasetSource("train", "s3://b/t.jsonl", SHA_A, 12, version_id="v1"),
               ds.DatasetSource("train", "s3://b/out/t.redacted.jsonl", SHA_B, 11,
                                derived_from=ds.DerivedFrom("s3://b/t.jsonl", SHA_A)),
               ds.DatasetSource("validation", "s3://b/v.jsonl", SHA_B, 3))
    text = ds.encode(sources)
    assert " " not in text
    assert ds.decode(text) == sources


def test_optional_fields_are_left_out_of_the_compact_document():
    assert ds.DatasetSource("train", "s3://b/t", SHA_A, 1).to_doc() == {
        "role": "train", "uri": "s3://b/t", "sha256": SHA_A, "bytes": 1}


@pytest.mark.parametrize("text", [None, ""])
def test_absent_value_decodes_to_no_sources(text):
    assert ds.decode(text) == ()


@pytest.mark.parametrize("doc, needle", [
    (_src(role="test"), "role"),
    (_src(sha256="A" * 64), "sha256"),
    (_src(sha256="sha256:" + SHA_A), "sha256"),
    (_src(sha256="a" * 63), "sha256"),
    (_src(uri="/etc/passwd"), "s3://"),
    (_src(uri=""), "uri"),
    (_src(bytes=-1), "bytes"),
    (_src(bytes=True), "bytes"),
    (_src(bytes="10"), "bytes"),
    (_src(versionId=""), "versionId"),
    (_src(derivedFrom="s3://b/x"), "derivedFrom"),
    (_src(derivedFrom={"uri": "s3://b/x", "sha256": "zz"}), "sha256"),
    ("not an object", "object"),
])
def test_decode_refuses_malformed_sources(doc, needle):
    with pytest.raises(ds.DatasetSourcesError, match=needle):
        ds.decode(json.dumps([doc]))


@pytest.mark.parametrize("text", ["{", '{"role": "train"}', "3"])
def test_decode_refuses_what_is_not_a_json_list(text):
    with pytest.raises(ds.DatasetSourcesError):
        ds.decode(text)


def test_expected_for_matches_role_and_uri():
    train = ds.DatasetSource("train", "s3://b/x.jsonl", SHA_A, 1)
    val = ds.DatasetSource("validation", "s3://b/x.jsonl", SHA_B, 1)
    assert ds.expected_for([train, val], "validation", "s3://b/x.jsonl") is val
    assert ds.expected_for([train, val], "regression", "s3://b/x.jsonl") is None
    assert ds.expected_for([train], "train", "s3://b/other.jsonl") is None


def test_read_uri_prefers_the_transformed_copy_of_the_object():
    original = ds.DatasetSource("train", "s3://b/t.jsonl", SHA_A, 5)
    copy = ds.DatasetSource("train", "s3://b/out/t.clean.jsonl", SHA_B, 4,
                            derived_from=ds.DerivedFrom("s3://b/t.jsonl", SHA_A))
    assert ds.read_uri([original, copy], "train", "s3://b/t.jsonl") == "s3://b/out/t.clean.jsonl"
    assert ds.read_uri([original, copy], "validation", "s3://b/t.jsonl") == "s3://b/t.jsonl"
    assert ds.read_uri([original], "train", "s3://b/t.jsonl") == "s3://b/t.jsonl"
