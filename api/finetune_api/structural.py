"""Applies a CRD's structural schema to a plain dict, as the apiserver would: defaults and checks.

The trainer runs outside the cluster too (tests, benchmarks, `finetune-trainer --config`), so it
re-applies the FineTuneJob schema itself: the same defaults and the same type, enum, bound and
required-field checks, with messages naming the field. The CEL cross-field rules stay the
apiserver's; the trainer re-checks the few it depends on in its own terms.
"""
from __future__ import annotations

import copy


class SchemaError(ValueError):
    """One or more fields are invalid; str() lists them, one per line, each naming its path."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("\n".join(problems))


def apply_defaults(value, schema: dict):
    """A copy of value with every absent defaulted field filled in (recursively)."""
    value = copy.deepcopy(value)
    _default(value, schema)
    return value


def _default(value, schema: dict) -> None:
    if isinstance(value, dict) and "properties" in schema:
        for name, child in schema["properties"].items():
            if name not in value and "default" in child:
                value[name] = copy.deepcopy(child["default"])
            if name in value:
                _default(value[name], child)
    elif isinstance(value, list) and "items" in schema:
        for item in value:
            _default(item, schema["items"])


def validate(value, schema: dict, path: str) -> None:
    problems: list[str] = []
    _check(value, schema, path, problems)
    if problems:
        raise SchemaError(problems)


def _check(value, schema: dict, path: str, problems: list[str]) -> None:
    if schema.get("x-kubernetes-preserve-unknown-fields") and "properties" not in schema:
        return
    if schema.get("x-kubernetes-int-or-string"):
        if not isinstance(value, (int, str)) or isinstance(value, bool):
            problems.append(f"{path}: must be an integer or a string")
        return
    kind = schema.get("type")
    checks = {"object": dict, "array": list, "string": str, "boolean": bool}
    if kind == "integer":
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif kind == "number":
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    else:
        ok = kind is None or isinstance(value, checks[kind])
    if not ok:
        problems.append(f"{path}: must be of type {kind} (got {type(value).__name__} {value!r})")
        return
    if "enum" in schema and value not in schema["enum"]:
        problems.append(f"{path}: Unsupported value {value!r}: supported values: "
                        + ", ".join(repr(v) for v in schema["enum"]))
    if kind in ("integer", "number"):
        low, high = schema.get("minimum"), schema.get("maximum")
        if low is not None and (value <= low if schema.get("exclusiveMinimum") else value < low):
            problems.append(f"{path}: must be {'greater than' if schema.get('exclusiveMinimum') else 'at least'} "
                            f"{low} (got {value})")
        if high is not None and (value >= high if schema.get("exclusiveMaximum") else value > high):
            problems.append(f"{path}: must be {'less than' if schema.get('exclusiveMaximum') else 'at most'} "
                            f"{high} (got {value})")
    if kind == "string":
        if "maxLength" in schema and len(value) > schema["maxLength"]:
            problems.append(f"{path}: may be at most {schema['maxLength']} characters")
        if "minLength" in schema and len(value) < schema["minLength"]:
            problems.append(f"{path}: must be at least {schema['minLength']} characters")
    if kind == "array":
        if "maxItems" in schema and len(value) > schema["maxItems"]:
            problems.append(f"{path}: may have at most {schema['maxItems']} items")
        if "minItems" in schema and len(value) < schema["minItems"]:
            problems.append(f"{path}: must have at least {schema['minItems']} items")
        for i, item in enumerate(value):
            _check(item, schema["items"], f"{path}[{i}]", problems)
    if kind == "object":
        props = schema.get("properties")
        for name in schema.get("required") or []:
            if name not in value:
                problems.append(f"{path}.{name}: Required value")
        if props is not None:
            for name, child in value.items():
                if name not in props:
                    problems.append(f"{path}.{name}: unknown field")
                else:
                    _check(child, props[name], f"{path}.{name}", problems)
        elif "additionalProperties" in schema:
            for name, child in value.items():
                _check(child, schema["additionalProperties"], f"{path}.{name}", problems)
