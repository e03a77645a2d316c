"""The local, real Kubernetes cluster the project is developed and tested against.

etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kwok (fake GPU nodes),
MinIO (S3) and a process node (pods run as local processes) - all on loopback, all built
from pinned Go modules by ``hack/build-tools``. ``hack/cluster up|down|status|env`` drives it.
"""
