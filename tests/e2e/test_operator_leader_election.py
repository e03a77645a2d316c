"""Two operator replicas: one Lease holder acts, the standby does nothing until the leader dies."""
from __future__ import annotations

import re

from kubernetes import client

from fakejobs import GROUP, KWOK_SETTINGS, VERSION, finetunejob, phase_is, setup_namespace, upload_result
from helpers import wait_for
from operator_process import OperatorProcess


def reconciles(proc: OperatorProcess) -> float:
    found = re.findall(r'^fto_operator_reconcile_duration_seconds_count\{kind="finetunejobs"\} (\S+)$',
                       proc.metrics(), re.M)
    return float(found[0]) if found else 0.0


def test_only_the_lease_holder_reconciles_and_the_standby_takes_over(cluster, api, crds, core, s3, namespace,
                                                                     tmp_path):
    bucket = setup_namespace(core, s3, namespace)
    args = ("--leader-election-lease", "finetune-operator", "--leader-election-namespace", namespace)
    first = OperatorProcess(cluster, [namespace], tmp_path / "first.log", env=KWOK_SETTINGS, args=args).start()
    leases = client.CoordinationV1Api(api)
    holder = wait_for(lambda: leases.read_namespaced_lease("finetune-operator", namespace).spec.holder_identity,
                      timeout=30, what="a leader")
    assert holder.endswith(f"_{first.proc.pid}")
    second = OperatorProcess(cluster, [namespace], tmp_path / "second.log", env=KWOK_SETTINGS, args=args).start()
    try:
        crds.create_namespaced_custom_object(GROUP, VERSION, namespace, "finetunejobs", finetunejob(
            cluster, bucket, "one", result=upload_result(s3, bucket, "one")))
        wait_for(lambda: phase_is(crds, namespace, "one", "Succeeded"), timeout=60, what="one Succeeded")
        assert reconciles(first) > 0 and reconciles(second) == 0, "the standby must not act"

        first.kill()  # no clean release: the standby waits out the Lease (15 s), then leads
        wait_for(lambda: leases.read_namespaced_lease("finetune-operator", namespace).spec.holder_identity.endswith(
            f"_{second.proc.pid}"), timeout=40, what="the standby took the Lease")
        crds.create_namespaced_custom_object(GROUP, VERSION, namespace, "finetunejobs", finetunejob(
            cluster, bucket, "two", result=upload_result(s3, bucket, "two")))
        wait_for(lambda: phase_is(crds, namespace, "two", "Succeeded"), timeout=60, what="two Succeeded")
        assert reconciles(second) > 0
    finally:
        first.stop()
        second.stop()
