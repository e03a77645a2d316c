"""API errors in plain words: what the user tried, where, and what the cluster said."""
from __future__ import annotations

import json


class PluginError(Exception):
    """A message for the user; the CLI prints it and exits 1."""


def _server_message(err) -> str:
    try:
        return json.loads(err.body).get("message", "") if err.body else ""
    except (TypeError, ValueError):
        return str(err.body or "")


def explain(err, action: str, kind: str, name: str | None, namespace: str | None) -> PluginError:
    """An ApiException (anything with .status and .body) -> PluginError with a sentence a user can act on."""
    what = f"{kind} {name}" if name else kind
    where = f" in namespace {namespace}" if namespace else ""
    detail = _server_message(err)
    status = getattr(err, "status", None)
    if status == 403:
        text = f"you are not allowed to {action} {what}{where}"
        if "denied request" in detail or "ValidatingAdmissionPolicy" in detail:
            text += f": {_policy_message(detail)}"
        else:
            text += " (ask a namespace admin for the edit or view role, into which the chart aggregates its finetune roles)"
        return PluginError(text)
    if status == 404:
        return PluginError(f"{what} not found{where}")
    if status == 401:
        return PluginError("the cluster did not accept your credentials (expired token or wrong kubeconfig?)")
    if status == 409:
        return PluginError(f"{what}{where} was changed by someone else meanwhile; try again")
    if status in (400, 422):
        return PluginError(f"the cluster refused to {action} {what}{where}: {_policy_message(detail)}")
    if status is None or status == 0:
        return PluginError(f"cannot reach the cluster to {action} {what}: {getattr(err, 'reason', err)}")
    return PluginError(f"could not {action} {what}{where}: HTTP {status} {detail or getattr(err, 'reason', '')}".rstrip())


def _policy_message(detail: str) -> str:
    """The part of an admission refusal written for people (after 'denied request: ')."""
    marker = "denied request: "
    return detail.split(marker, 1)[1] if marker in detail else detail
