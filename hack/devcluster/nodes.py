"""Node objects of the local cluster: fake GPU nodes (kwok) and the process node. Pure."""
from __future__ import annotations

GPU_RESOURCE = "nvidia.com/gpu"
# Only pods that tolerate this taint land on the fake GPU nodes, as on a real GPU pool.
GPU_TAINT = {"key": GPU_RESOURCE, "value": "present", "effect": "NoSchedule"}
GPU_PRODUCT = "NVIDIA-H100-80GB-HBM3"
PROCESS_NODE_NAME = "fto-process-node"
PROCESS_NODE_LABEL = "fto.dev/process-node"


def fake_gpu_node(index: int, gpus: int = 8) -> dict:
    name = f"fto-gpu-{index}"
    resources = {"cpu": "96", "memory": "1024Gi", "pods": "110", "ephemeral-storage": "2Ti", GPU_RESOURCE: str(gpus)}
    return {
        "apiVersion": "v1", "kind": "Node",
        "metadata": {
            "name": name,
            "annotations": {"kwok.x-k8s.io/node": "fake", "node.alpha.kubernetes.io/ttl": "0"},
            "labels": {
                "kubernetes.io/hostname": name, "kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64",
                "type": "kwok", "nvidia.com/gpu.present": "true", "nvidia.com/gpu.product": GPU_PRODUCT,
                "nvidia.com/gpu.count": str(gpus), "node.kubernetes.io/instance-type": f"fake-{gpus}xh100",
            },
        },
        "spec": {"taints": [GPU_TAINT]},
        # Nodes keep the status they are created with; kwok then keeps them Ready.
        "status": {"allocatable": resources, "capacity": resources},
    }


def fake_gpu_nodes(count: int = 4, gpus: int = 8) -> list[dict]:
    return [fake_gpu_node(i, gpus) for i in range(count)]


def process_node(cpu: int, memory_bytes: int, max_pods: int = 64) -> dict:
    """The node whose pods really run, as local processes, under devcluster.processnode."""
    resources = {"cpu": str(cpu), "memory": str(memory_bytes), "pods": str(max_pods), "ephemeral-storage": "100Gi"}
    return {
        "apiVersion": "v1", "kind": "Node",
        "metadata": {
            "name": PROCESS_NODE_NAME,
            "labels": {"kubernetes.io/hostname": PROCESS_NODE_NAME, "kubernetes.io/os": "linux",
                       "kubernetes.io/arch": "amd64", PROCESS_NODE_LABEL: "true"},
        },
        "spec": {},
        "status": {"allocatable": resources, "capacity": resources},
    }
