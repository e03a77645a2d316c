"""Pure: what only the cluster can tell before anything is launched (the CRD cannot see nodes)."""
from __future__ import annotations

from typing import Optional

from .builders.pod import GPU, GPU_PRODUCT_LABEL


def gpu_fit(spec: dict, nodes: list) -> Optional[tuple[str, str]]:
    """(reason, message) if no set of known nodes can host the trainer pods, else None.

    A node fits when its allocatable nvidia.com/gpu covers gpusPerNode and its labels match the
    job's nodeSelector / gpuProduct. Multi-node jobs need `nodes` such nodes.
    """
    r = spec.get("resources") or {}
    gpus, want_nodes = int(r.get("gpusPerNode", 1)), int(r.get("nodes", 1))
    if gpus == 0:
        return None
    selector = dict(r.get("nodeSelector") or {})
    if r.get("gpuProduct"):
        selector[GPU_PRODUCT_LABEL] = r["gpuProduct"]
    shapes = []
    for node in nodes:
        labels = node["metadata"].get("labels") or {}
        have = int(((node.get("status") or {}).get("allocatable") or {}).get(GPU, 0) or 0)
        if have and all(labels.get(k) == v for k, v in selector.items()):
            shapes.append((have, node["metadata"]["name"]))
    fitting = [s for s in shapes if s[0] >= gpus]
    wanted = f"{gpus} {GPU}" + (f" on nodes labelled {selector}" if selector else "")
    if not shapes:
        return ("NoFittingNode", f"no node offers {wanted}: spec.resources asks for a GPU shape this cluster "
                                 "does not have")
    if not fitting:
        biggest = max(shapes)
        return ("NoFittingNode", f"spec.resources.gpusPerNode is {gpus}, but the largest GPU node offers "
                                 f"{biggest[0]} ({biggest[1]})")
    if len(fitting) < want_nodes:
        return ("NoFittingNode", f"spec.resources.nodes is {want_nodes}, but only {len(fitting)} node(s) offer "
                                 f"{wanted}")
    return None
