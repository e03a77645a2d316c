"""Every S3 and agent call of the operator has a TOTAL deadline and size caps.

(Prometheus queries have theirs in modelversion/prometheus.py.) A loopback "tarpit" answers one byte at a time, fast enough that no per-read socket timeout ever
trips: only a deadline on the whole call stops it. Before this, each of these calls took as long
as the tarpit liked (minutes), holding a shared reconcile worker all the while.
"""
from __future__ import annotations

import hashlib
import json
import socket
import threading
import time

import pytest

from finetune_operator import deadline, storage
from finetune_operator.modelversion import agent_client
from finetune_operator.modelversion.pods import Pod


class Tarpit:
    """A loopback server that reads the request, then drips `answer` one byte per `interval` s."""

    def __init__(self, answer: bytes = b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n" + b"x" * 1000,
                 interval: float = 0.2):
        self.answer, self.interval = answer, interval
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.connections = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._drip, args=(conn,), daemon=True).start()

    def _drip(self, conn):
        with conn:
            try:
                conn.recv(65536)
                if not self.interval:
                    conn.sendall(self.answer)
                    return
                for b in self.answer:
                    conn.sendall(bytes([b]))
                    time.sleep(self.interval)
            except OSError:
                pass

    def close(self):
        self.sock.close()


class Answer:
    """A loopback server answering every request at once with one fixed HTTP response."""

    def __init__(self, body: bytes, status: str = "200 OK"):
        self.response = (f"HTTP/1.1 {status}\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
                         + body)
        self.tarpit = Tarpit(self.response, interval=0)
        self.url = self.tarpit.url

    def close(self):
        self.tarpit.close()


@pytest.fixture
def tarpit():
    t = Tarpit()
    yield t
    t.close()


def timed(fn):
    started = time.monotonic()
    try:
        fn()
    except Exception as err:  # noqa: BLE001
        return time.monotonic() - started, err
    return time.monotonic() - started, None


# --- the mechanism -------------------------------------------------------------------------------------------
def test_a_deadline_cuts_a_drip_fed_response_that_no_read_timeout_trips(tarpit):
    import urllib.request

    def call():
        with deadline.within(1.0, "tarpit"):
            urllib.request.urlopen(tarpit.url, timeout=5).read()
    seconds, err = timed(call)
    assert isinstance(err, deadline.DeadlineExceeded) and seconds < 2.0


def test_a_connect_after_the_deadline_is_refused_at_once(tarpit):
    def call():
        with deadline.within(0.3, "tarpit"):
            time.sleep(0.5)
            socket.create_connection(("127.0.0.1", tarpit.port), timeout=5)
    seconds, err = timed(call)
    assert isinstance(err, deadline.DeadlineExceeded) and seconds < 1.0


def test_a_nested_deadline_never_extends_the_outer_one_and_keeps_bounding_its_sockets(tarpit):
    import urllib.request

    def call():
        with deadline.within(1.0, "outer"):
            with deadline.within(30.0, "inner"):
                resp = urllib.request.urlopen(tarpit.url, timeout=5)
            resp.read()  # the body, after the inner call ended: still under the outer deadline
    seconds, err = timed(call)
    assert err is not None and seconds < 2.0


def test_sockets_of_a_finished_call_are_left_alone():
    server = Answer(b"{}")
    import urllib.request
    with deadline.within(0.3, "quick"):
        urllib.request.urlopen(server.url, timeout=5).read()
    time.sleep(0.5)
    assert not deadline.expired() and deadline.current() is None
    server.close()


# --- S3 -------------------------------------------------------------------------------------------------------
def s3_client(url):
    import boto3
    from botocore.config import Config
    return storage._bounded(boto3.client("s3", endpoint_url=url, aws_access_key_id="k", aws_secret_access_key="s",
                                         region_name="us-east-1",
                                         config=Config(retries={"max_attempts": 3, "mode": "standard"},
                                                       connect_timeout=5, read_timeout=10)))


@pytest.fixture
def limits(monkeypatch):
    from finetune_operator.builders.settings import OperatorSettings
    settings = OperatorSettings(s3_call_seconds=1.0, s3_verify_seconds=2.0, max_manifest_files=3,
                                max_adapter_file_bytes=1000)
    monkeypatch.setattr(storage, "limits", lambda: settings)
    return settings


def test_a_tarpit_s3_endpoint_fails_manifest_verification_within_its_total_deadline(tarpit, limits):
    seconds, err = timed(lambda: storage.verify_manifest(s3_client(tarpit.url), "s3://bucket/run/manifest.json"))
    assert isinstance(err, storage.StorageError) and err.reason == "S3Unavailable", err
    assert seconds < limits.s3_verify_seconds + 1.5, f"took {seconds:.1f} s"


def test_every_s3_api_call_has_its_own_total_deadline_retries_included(tarpit, limits):
    client = s3_client(tarpit.url)
    seconds, err = timed(lambda: client.list_objects_v2(Bucket="bucket", Prefix="p/"))
    assert err is not None and seconds < limits.s3_call_seconds + 1.0, f"took {seconds:.1f} s"


class FakeS3:
    def __init__(self, objects: dict):
        self.objects, self.reads = objects, []

    def get_object(self, Bucket, Key):  # noqa: N803
        import io
        self.reads.append(Key)
        if Key not in self.objects:
            raise KeyError(Key)
        return {"Body": io.BytesIO(self.objects[Key])}


def manifest(files: list) -> bytes:
    return json.dumps({"kind": "AdapterManifest", "files": files}).encode()


def entry(name, data):
    return {"name": name, "sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}


@pytest.mark.parametrize("files,refusal", [
    ([entry(f"adapter/f{i}", b"x") for i in range(4)], "lists 4 files"),             # over max_manifest_files
    ([{"name": "adapter/big", "sha256": "0" * 64, "size": 10 ** 9}], "over 1000 bytes"),  # declared size cap
])
def test_manifests_over_the_caps_are_refused_before_any_file_is_read(limits, files, refusal):
    s3 = FakeS3({"run/manifest.json": manifest(files)})
    with pytest.raises(storage.StorageError) as err:
        storage.verify_manifest(s3, "s3://bucket/run/manifest.json")
    assert err.value.reason == "ManifestInvalid" and refusal in err.value.message
    assert s3.reads == ["run/manifest.json"]


def test_a_file_longer_than_its_manifest_says_is_read_only_one_byte_past_it(limits):
    data = b"y" * 10
    s3 = FakeS3({"run/manifest.json": manifest([entry("adapter/w", data)]), "run/adapter/w": data + b"z" * 5000})
    assert storage.object_sha256(s3, "s3://bucket/run/adapter/w", 10)[1] == 11
    with pytest.raises(storage.StorageError) as err:
        storage.verify_manifest(s3, "s3://bucket/run/manifest.json")
    assert err.value.reason == "DigestMismatch"


def test_a_manifest_larger_than_its_cap_is_refused(limits, monkeypatch):
    from finetune_operator.builders.settings import OperatorSettings
    monkeypatch.setattr(storage, "limits", lambda: OperatorSettings(max_manifest_bytes=100))
    s3 = FakeS3({"run/manifest.json": b" " * 200})
    with pytest.raises(storage.StorageError) as err:
        storage.verify_manifest(s3, "s3://bucket/run/manifest.json")
    assert err.value.reason == "ManifestInvalid" and "larger than 100 bytes" in err.value.message


# --- the adapter agent ----------------------------------------------------------------------------------------
def test_a_tarpit_agent_is_cut_off_at_the_calls_timeout(tarpit):
    agent = agent_client.Agent(Pod("p", "127.0.0.1"), tarpit.port, timeout=1.0)
    seconds, err = timed(agent.state)
    assert isinstance(err, agent_client.AgentError) and err.reason == "AgentTimeout" and seconds < 2.0


def test_an_agents_oversized_answer_is_refused():
    server = Answer(json.dumps({"adapters": ["x" * 100] * 20000}).encode())
    agent = agent_client.Agent(Pod("p", "127.0.0.1"), int(server.url.rsplit(":", 1)[1]), timeout=5)
    with pytest.raises(agent_client.AgentError) as err:
        agent.state()
    assert err.value.reason == "BadResponse" and "larger than" in err.value.message
    server.close()
