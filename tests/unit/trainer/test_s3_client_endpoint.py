"""The trainer refuses to build an S3 client for a metadata endpoint, whatever admission let through."""
import pytest

from finetune_api.termination import ExitCode
from finetune_trainer import s3
from finetune_trainer.outcomes import TrainerFailure


@pytest.mark.parametrize("endpoint", ["http://169.254.169.254", "http://[::ffff:a9fe:a9fe]", "http://2852039166",
                                      "http://metadata.google.internal", "http://good@169.254.169.254:9000"])
def test_a_metadata_endpoint_fails_the_job_as_invalid_config_before_any_request(endpoint):
    with pytest.raises(TrainerFailure) as refused:
        s3.client(endpoint)
    assert refused.value.code == ExitCode.INVALID_CONFIG
    assert "spec.credentials.endpoint is refused" in str(refused.value)


def test_an_ordinary_endpoint_and_the_provider_default_build_a_client():
    assert s3.client("http://127.0.0.1:9000").meta.endpoint_url == "http://127.0.0.1:9000"
    assert s3.client(None, "us-east-1") is not None
