"""A small vocabulary for writing structural OpenAPI v3 schemas with CEL rules.

Every helper takes the field's description first: `kubectl explain` prints it, and the API
reference (docs/api-reference.md) is generated from it, so a field cannot exist undocumented.
Strings get a maxLength and lists a maxItems by default because the apiserver's CEL cost
estimator refuses rules over unbounded values.
"""
from __future__ import annotations

from typing import Any, Iterable

DNS_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
S3_BUCKET = r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]"
# CEL (RE2) patterns; checked in rules so the message can say what a good value looks like.
S3_OBJECT_RE = f"^s3://{S3_BUCKET}/.+$"
S3_PREFIX_RE = f"^s3://{S3_BUCKET}(/.*)?$"
SHA256_RE = "^sha256:[a-f0-9]{64}$"
# A key with a '..' or '.' segment or an empty one ('//'): it could climb out of its prefix.
S3_DOT_SEGMENT_RE = r"^s3://[^/]*/(.*/)?((\\.\\.?)?/|\\.\\.?$)"
QUANTITY = (r"^(\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))(([KMGTPE]i)|[numkMGTPE]|"
            r"([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$")


def _with(node: dict, default: Any = None, rules: Iterable[dict] = (), **extra) -> dict:
    if default is not None:
        node["default"] = default
    rules = list(rules)
    if rules:
        node["x-kubernetes-validations"] = rules
    node.update({k.replace("_", "-") if k.startswith("x_") else k: v for k, v in extra.items() if v is not None})
    return node


def string(description: str, *, max_length: int = 253, enum: list[str] | None = None, pattern: str | None = None,
           default: str | None = None, min_length: int | None = None, fmt: str | None = None,
           rules: Iterable[dict] = ()) -> dict:
    node = {"type": "string", "description": description}
    if enum:
        node["enum"] = enum
    else:
        node["maxLength"] = max_length
    return _with(node, default, rules, pattern=pattern, minLength=min_length, format=fmt)


def integer(description: str, *, minimum: int | None = None, maximum: int | None = None,
            default: int | None = None, fmt: str = "int32", rules: Iterable[dict] = ()) -> dict:
    return _with({"type": "integer", "format": fmt, "description": description}, default, rules,
                 minimum=minimum, maximum=maximum)


def number(description: str, *, minimum: float | None = None, maximum: float | None = None,
           exclusive_minimum: bool | None = None, exclusive_maximum: bool | None = None,
           default: float | None = None, rules: Iterable[dict] = ()) -> dict:
    return _with({"type": "number", "description": description}, default, rules, minimum=minimum, maximum=maximum,
                 exclusiveMinimum=exclusive_minimum, exclusiveMaximum=exclusive_maximum)


def boolean(description: str, *, default: bool | None = None, rules: Iterable[dict] = ()) -> dict:
    return _with({"type": "boolean", "description": description}, default, rules)


def timestamp(description: str) -> dict:
    return {"type": "string", "format": "date-time", "description": description}


def quantity(description: str) -> dict:
    return {"description": description, "x-kubernetes-int-or-string": True, "anyOf": [{"type": "integer"}, {"type": "string"}],
            "pattern": QUANTITY}


def obj(description: str, properties: dict, *, required: Iterable[str] = (), default: dict | None = None,
        rules: Iterable[dict] = ()) -> dict:
    node = {"type": "object", "description": description, "properties": properties}
    if required:
        node["required"] = list(required)
    return _with(node, default, rules)


def string_map(description: str, *, max_properties: int = 64, value_max_length: int = 253) -> dict:
    return {"type": "object", "description": description, "maxProperties": max_properties,
            "additionalProperties": {"type": "string", "maxLength": value_max_length}}


def number_map(description: str, *, max_properties: int = 64) -> dict:
    return {"type": "object", "description": description, "maxProperties": max_properties,
            "additionalProperties": {"type": "number"}}


def opaque(description: str) -> dict:
    """A subtree kept as given (e.g. a core/v1 Affinity): the apiserver validates it where it is used."""
    return {"type": "object", "description": description, "x-kubernetes-preserve-unknown-fields": True}


def array(description: str, items: dict, *, max_items: int = 32, min_items: int | None = None,
          list_type: str | None = None, map_keys: list[str] | None = None, default: list | None = None,
          rules: Iterable[dict] = ()) -> dict:
    node = {"type": "array", "description": description, "items": items, "maxItems": max_items}
    if list_type:
        node["x-kubernetes-list-type"] = list_type
    if map_keys:
        node["x-kubernetes-list-map-keys"] = map_keys
    return _with(node, default, rules, minItems=min_items)


def rule(expression: str, message: str, *, field_path: str | None = None, reason: str | None = None) -> dict:
    """A CEL rule. message names the field and says the fix; field_path points the error at a child."""
    r = {"rule": expression, "message": message}
    if field_path:
        r["fieldPath"] = field_path
    if reason:
        r["reason"] = reason
    return r


def _plain_segments(field: str) -> dict:
    return rule(f"!self.matches('{S3_DOT_SEGMENT_RE}')",
                f"{field} must not have '..', '.' or empty ('//') path segments")


def s3_object(description: str, field: str, **kw) -> dict:
    return string(description, max_length=1024, rules=[rule(
        f"self.matches('{S3_OBJECT_RE}')",
        f"{field} must be an s3:// URI of an object, like s3://my-bucket/path/train.jsonl"), _plain_segments(field)],
        **kw)


def s3_prefix(description: str, field: str, **kw) -> dict:
    return string(description, max_length=1024, rules=[rule(
        f"self.matches('{S3_PREFIX_RE}')",
        f"{field} must be an s3:// URI, like s3://my-bucket/some/prefix/"), _plain_segments(field)], **kw)


def sha256_digest(description: str, field: str) -> dict:
    return string(description, max_length=71, rules=[rule(
        f"self.matches('{SHA256_RE}')", f"{field} must look like sha256:<64 lowercase hex digits>")])


def dns_label(description: str, field: str, *, max_length: int = 63) -> dict:
    return string(description, max_length=max_length, rules=[rule(
        f"self.matches('{DNS_LABEL}')",
        f"{field} must be a DNS label: lowercase letters, digits and '-', starting and ending alphanumeric")])


def local_object_ref(description: str, what: str) -> dict:
    return obj(description, {"name": string(f"Name of the {what} in the same namespace.", max_length=253)},
               required=["name"])


def conditions(description: str) -> dict:
    return array(description, obj("A condition, shaped like metav1.Condition.", {
        "type": string("Condition type, CamelCase (e.g. Ready, Succeeded).", max_length=316),
        "status": string("True, False or Unknown.", enum=["True", "False", "Unknown"]),
        "reason": string("One CamelCase word saying why; stable, for machines.", max_length=1024),
        "message": string("What happened, in plain words, for humans.", max_length=32768),
        "lastTransitionTime": timestamp("When the status last changed."),
        "observedGeneration": integer("The metadata.generation this condition was computed from.", minimum=0,
                                      fmt="int64"),
    }, required=["type", "status", "lastTransitionTime"]), list_type="map", map_keys=["type"], max_items=16)


def crd_document(group: str, version: str, kind: str, plural: str, short_names: list[str], columns: list[dict],
                 root: dict) -> dict:
    """The CustomResourceDefinition around a root schema: namespaced, status subresource, the finetune category."""
    return {
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.{group}"},
        "spec": {
            "group": group, "scope": "Namespaced",
            "names": {"kind": kind, "listKind": f"{kind}List", "plural": plural, "singular": kind.lower(),
                      "shortNames": short_names, "categories": ["finetune", "all"]},
            "versions": [{"name": version, "served": True, "storage": True, "subresources": {"status": {}},
                          "additionalPrinterColumns": columns, "schema": {"openAPIV3Schema": root}}],
        },
    }


def column(name: str, json_path: str, kind: str = "string", priority: int = 0) -> dict:
    col = {"name": name, "type": kind, "jsonPath": json_path}
    if priority:
        col["priority"] = priority
    return col
