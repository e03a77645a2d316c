import pytest

from devcluster.processnode import plan


def pod(containers, volumes=None):
    return {"metadata": {"name": "p", "namespace": "team-a", "uid": "u-1", "labels": {"app": "x"}},
            "spec": {"containers": containers, "volumes": volumes or [], "nodeName": "n1", "serviceAccountName": "sa"},
            "status": {"podIP": "127.2.0.5"}}


SECRETS = {("Secret", "team-a", "s3"): {"AWS_ACCESS_KEY_ID": b"AK", "AWS_SECRET_ACCESS_KEY": b"SK"},
           ("ConfigMap", "team-a", "cfg"): {"LEVEL": b"debug"}}


def lookup(kind, ns, name):
    return SECRETS.get((kind, ns, name))


def test_env_precedence_envfrom_then_env_then_expansion():
    c = {"name": "c", "image": "busybox", "command": ["echo", "$(GREETING)", "$$(LITERAL)", "$(UNKNOWN)"],
         "envFrom": [{"secretRef": {"name": "s3"}}, {"configMapRef": {"name": "cfg"}, "prefix": "APP_"}],
         "env": [{"name": "WHO", "value": "world"}, {"name": "GREETING", "value": "hello $(WHO)"},
                 {"name": "APP_LEVEL", "value": "info"},
                 {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
                 {"name": "APP", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app']"}}},
                 {"name": "KEY", "valueFrom": {"secretKeyRef": {"name": "s3", "key": "AWS_ACCESS_KEY_ID"}}}]}
    p = plan.plan_container(pod([c]), c, lookup, {"PATH": "/bin"})
    assert p.argv == ["echo", "hello world", "$(LITERAL)", "$(UNKNOWN)"]
    assert p.env["AWS_SECRET_ACCESS_KEY"] == "SK" and p.env["APP_LEVEL"] == "info"
    assert p.env["POD_IP"] == "127.2.0.5" and p.env["APP"] == "x" and p.env["KEY"] == "AK"
    assert p.env["PATH"] == "/bin"


def test_missing_secret_key_is_a_config_error_naming_it():
    c = {"name": "c", "image": "busybox", "command": ["true"],
         "env": [{"name": "X", "valueFrom": {"secretKeyRef": {"name": "s3", "key": "nope"}}}]}
    with pytest.raises(plan.ConfigError, match='couldn\'t find key nope in secret "s3"'):
        plan.plan_container(pod([c]), c, lookup, {})


def test_optional_missing_secret_is_skipped():
    c = {"name": "c", "image": "busybox", "command": ["true"],
         "env": [{"name": "X", "valueFrom": {"secretKeyRef": {"name": "gone", "key": "k", "optional": True}}}],
         "envFrom": [{"secretRef": {"name": "gone", "optional": True}}]}
    assert "X" not in plan.plan_container(pod([c]), c, lookup, {}).env


def test_mounts_and_termination_path():
    c = {"name": "c", "image": "busybox", "command": ["true"], "terminationMessagePolicy": "FallbackToLogsOnError",
         "volumeMounts": [{"name": "data", "mountPath": "/data", "readOnly": True}]}
    p = plan.plan_container(pod([c], [{"name": "data", "emptyDir": {}}]), c, lookup, {})
    assert p.mounts == [plan.Mount("data", "/data", True)]
    assert p.termination_message_path == "/dev/termination-log" and p.fallback_to_logs


def test_mount_of_undeclared_volume_is_refused():
    c = {"name": "c", "image": "busybox", "command": ["true"], "volumeMounts": [{"name": "x", "mountPath": "/x"}]}
    with pytest.raises(plan.ConfigError, match="names no volume"):
        plan.plan_container(pod([c]), c, lookup, {})
