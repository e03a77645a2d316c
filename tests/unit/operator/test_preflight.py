"""Does the GPU request fit a node shape the cluster has?"""
from finetune_operator.preflight import gpu_fit


def node(name, gpus, **labels):
    return {"metadata": {"name": name, "labels": labels}, "status": {"allocatable": {"nvidia.com/gpu": str(gpus)}}}


NODES = [node("gpu-a", 8, **{"nvidia.com/gpu.product": "H100"}), node("gpu-b", 8), node("cpu", 0)]


def test_cpu_jobs_always_fit():
    assert gpu_fit({"resources": {"gpusPerNode": 0}}, []) is None


def test_a_request_within_the_largest_node_fits():
    assert gpu_fit({"resources": {"gpusPerNode": 8, "nodes": 2}}, NODES) is None


def test_too_many_gpus_per_node_names_the_largest_node():
    reason, message = gpu_fit({"resources": {"gpusPerNode": 16}}, NODES)
    assert reason == "NoFittingNode" and "largest GPU node offers 8" in message


def test_too_many_nodes():
    reason, message = gpu_fit({"resources": {"gpusPerNode": 4, "nodes": 3}}, NODES)
    assert "spec.resources.nodes is 3" in message and "only 2" in message


def test_gpu_product_selects_nodes():
    assert gpu_fit({"resources": {"gpusPerNode": 1, "gpuProduct": "H100"}}, NODES) is None
    reason, message = gpu_fit({"resources": {"gpusPerNode": 1, "gpuProduct": "B200"}}, NODES)
    assert reason == "NoFittingNode" and "B200" in message
