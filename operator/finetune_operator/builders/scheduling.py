"""Pure: which of a tenant's scheduling fields the platform team allows in its namespace.

A FineTuneJob's spec.resources (tolerations, nodeSelector, gpuProduct, affinity, priorityClassName)
and its pod-annotation passthrough reach the trainer pods. Left open, a tenant could tolerate every
taint (`operator: Exists` with no key), run at `system-node-critical` priority, pin pods to the
control plane, or turn AppArmor off with an annotation. The chart's policy
(templates/vap-scheduling.yaml) refuses such jobs at admission; this module is the operator's own
check of the same allow-lists (FTO_SCHEDULING_POLICY, see settings.py), so a job admitted before
the policy existed, or in a namespace the policy does not select, still never gets those fields.

The policy: {"allowed": LISTS, "namespaces": {"<ns>": LISTS}} where LISTS may hold
priorityClassNames, tolerationKeys, nodeSelectorKeys (label keys for nodeSelector, gpuProduct's
nvidia.com/gpu.product and node affinity) and annotationPrefixes. A namespace gets the
cluster-wide lists plus its own. None (no policy configured) allows everything but a keyless
Exists toleration, which is refused always.
"""
from __future__ import annotations

import json
from typing import Optional

LIST_NAMES = ("priorityClassNames", "tolerationKeys", "nodeSelectorKeys", "annotationPrefixes")
GPU_PRODUCT_LABEL = "nvidia.com/gpu.product"
REASON = "SchedulingNotAllowed"


def allowed_for(policy: Optional[dict], namespace: str) -> Optional[dict]:
    """The namespace's lists (cluster-wide plus its own) as sets; None when no policy is configured."""
    if policy is None:
        return None
    own = (policy.get("namespaces") or {}).get(namespace) or {}
    cluster = policy.get("allowed") or {}
    return {n: set(cluster.get(n) or ()) | set(own.get(n) or ()) for n in LIST_NAMES}


def _toleration_problems(tolerations: list, allowed: Optional[dict]) -> list:
    out = []
    for i, t in enumerate(tolerations or []):
        key = t.get("key") or ""
        if not key:
            out.append(f"spec.resources.tolerations[{i}] has no key: a toleration of every taint is never allowed")
        elif allowed is not None and key not in allowed["tolerationKeys"]:
            out.append(f"spec.resources.tolerations[{i}].key {key} is not allowed"
                       f"{_allowed_text(allowed['tolerationKeys'])}")
    return out


def _node_affinity_keys(affinity: dict) -> list:
    node = (affinity or {}).get("nodeAffinity") or {}
    terms = list(((node.get("requiredDuringSchedulingIgnoredDuringExecution") or {}).get("nodeSelectorTerms")) or [])
    terms += [p.get("preference") or {} for p in node.get("preferredDuringSchedulingIgnoredDuringExecution") or []]
    return [e.get("key", "") for term in terms
            for e in (term.get("matchExpressions") or []) + (term.get("matchFields") or [])]


def _pod_affinity_terms(affinity: dict) -> list:
    terms = []
    for kind in ("podAffinity", "podAntiAffinity"):
        block = (affinity or {}).get(kind) or {}
        terms += block.get("requiredDuringSchedulingIgnoredDuringExecution") or []
        terms += [w.get("podAffinityTerm") or {} for w in block.get("preferredDuringSchedulingIgnoredDuringExecution") or []]
    return terms


def _affinity_problems(affinity: dict, allowed: Optional[dict]) -> list:
    out = []
    for term in _pod_affinity_terms(affinity):
        if "namespaces" in term or "namespaceSelector" in term:
            out.append("spec.resources.affinity: pod (anti-)affinity may only select pods of the job's own namespace "
                       "(no namespaces or namespaceSelector)")
            break
    if allowed is not None:
        for key in _node_affinity_keys(affinity):
            if key not in allowed["nodeSelectorKeys"]:
                out.append(f"spec.resources.affinity: node label {key} is not allowed"
                           f"{_allowed_text(allowed['nodeSelectorKeys'])}")
    return out


def _allowed_text(values: set) -> str:
    return f" (allowed here: {', '.join(sorted(values))})" if values else " (none are allowed in this namespace)"


def spec_problems(spec: dict, namespace: str, policy: Optional[dict]) -> list:
    """Plain-words problems with spec.resources' scheduling fields, each naming the field; [] if none."""
    r = spec.get("resources") or {}
    allowed = allowed_for(policy, namespace)
    out = _toleration_problems(r.get("tolerations"), allowed) + _affinity_problems(r.get("affinity"), allowed)
    if allowed is None:
        return out
    pc = r.get("priorityClassName")
    if pc and pc not in allowed["priorityClassNames"]:
        out.append(f"spec.resources.priorityClassName {pc} is not allowed{_allowed_text(allowed['priorityClassNames'])}")
    keys = list(r.get("nodeSelector") or {}) + ([GPU_PRODUCT_LABEL] if r.get("gpuProduct") else [])
    for key in keys:
        if key not in allowed["nodeSelectorKeys"]:
            field = "gpuProduct (node label " + key + ")" if key == GPU_PRODUCT_LABEL and r.get("gpuProduct") \
                and key not in (r.get("nodeSelector") or {}) else "nodeSelector key " + key
            out.append(f"spec.resources.{field} is not allowed{_allowed_text(allowed['nodeSelectorKeys'])}")
    return out


def annotation_allowed(key: str, namespace: str, policy: Optional[dict]) -> bool:
    allowed = allowed_for(policy, namespace)
    return allowed is None or any(key.startswith(p) for p in allowed["annotationPrefixes"])


def annotation_problems(metadata: dict, annotation_keys: tuple, namespace: str, policy: Optional[dict]) -> list:
    """Pod annotations asked for (through the passthrough annotations) that the policy does not allow."""
    out = []
    for source in annotation_keys:
        for key in sorted(parse_annotation_map((metadata.get("annotations") or {}).get(source))):
            if not annotation_allowed(key, namespace, policy):
                allowed = allowed_for(policy, namespace)["annotationPrefixes"]
                out.append(f"metadata.annotations[{source}]: pod annotation {key} is not allowed"
                           f"{_allowed_text(allowed).replace('allowed here', 'allowed prefixes here')}")
    return out


def parse_annotation_map(raw: Optional[str]) -> dict:
    """A passthrough annotation's value (a JSON object of strings); {} if unset or malformed."""
    if not raw:
        return {}
    try:
        parsed = json.loads(raw)
    except ValueError:
        return {}
    if not isinstance(parsed, dict):
        return {}
    return {str(k): str(v) for k, v in parsed.items()}


def refusal(ftj: dict, policy: Optional[dict], annotation_keys: tuple) -> Optional[tuple]:
    """(reason, message) when the job asks for scheduling fields or pod annotations its namespace may not
    use, else None. For the reconciler to fail the job with a clear condition before any pod exists."""
    ns = ftj["metadata"].get("namespace", "")
    problems = spec_problems(ftj.get("spec") or {}, ns, policy) + \
        annotation_problems(ftj["metadata"], annotation_keys, ns, policy)
    if not problems:
        return None
    return REASON, "; ".join(problems) + "; ask the platform team to allow it, or remove it from the job"
