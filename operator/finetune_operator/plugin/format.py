"""Pure text formatting for the plugin: tables, descriptions, the progress line. No I/O."""
from __future__ import annotations

import datetime as dt

TERMINAL_JOB_PHASES = ("Succeeded", "Failed", "Cancelled")


def parse_time(value: str | None) -> dt.datetime | None:
    if not value:
        return None
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00"))


def duration(seconds: float | None) -> str:
    """Like kubectl's ages: 45s, 3m20s, 2h5m, 3d4h."""
    if seconds is None:
        return "-"
    seconds = int(max(seconds, 0))
    if seconds < 60:
        return f"{seconds}s"
    minutes, s = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m{s}s" if s else f"{minutes}m"
    hours, m = divmod(minutes, 60)
    if hours < 24:
        return f"{hours}h{m}m" if m else f"{hours}h"
    days, h = divmod(hours, 24)
    return f"{days}d{h}h" if h else f"{days}d"


def age(timestamp: str | None, now: dt.datetime) -> str:
    when = parse_time(timestamp)
    return duration((now - when).total_seconds()) if when else "-"


def number(value, digits: int = 4) -> str:
    if value is None:
        return "-"
    return f"{value:.{digits}g}" if isinstance(value, float) else str(value)


def table(headers: list[str], rows: list[list[str]]) -> str:
    """kubectl-style columns: upper-case headers, left-aligned, three spaces apart."""
    widths = [max(len(str(cell)) for cell in column) for column in zip(headers, *rows)]
    lines = ["   ".join(str(cell).ljust(width) for cell, width in zip(row, widths)).rstrip()
             for row in [headers, *rows]]
    return "\n".join(lines)


def jobs_table(jobs: list[dict], now: dt.datetime, all_namespaces: bool = False) -> str:
    headers = (["NAMESPACE"] if all_namespaces else []) + ["NAME", "PHASE", "PROGRESS", "LOSS", "EVAL", "MODEL",
                                                           "VERSION", "AGE"]
    rows = []
    for job in sorted(jobs, key=lambda j: (j["metadata"].get("namespace", ""), j["metadata"]["name"])):
        status = job.get("status") or {}
        progress = status.get("progress") or {}
        row = [job["metadata"]["name"], status.get("phase", "Pending"), progress.get("display", "-"),
               number(progress.get("trainLoss")), number(progress.get("evalLoss")),
               (job["spec"].get("baseModel") or {}).get("name", "-"), status.get("modelVersion", "-"),
               age(job["metadata"].get("creationTimestamp"), now)]
        rows.append(([job["metadata"].get("namespace", "")] if all_namespaces else []) + row)
    return table(headers, rows)


def progress_line(job: dict, width: int = 30) -> str:
    """One line: [#####.....] 12/30 40% loss 1.23 eval 1.30 412 tok/s ETA 1m20s Running."""
    status = job.get("status") or {}
    phase = status.get("phase", "Pending")
    progress = status.get("progress") or {}
    step, total = progress.get("step"), progress.get("totalSteps")
    if step is None or not total:
        reason = f" ({status['reason']})" if status.get("reason") else ""
        return f"[{'.' * width}] {phase}{reason}"
    filled = min(width, int(width * step / total))
    parts = [f"[{'#' * filled}{'.' * (width - filled)}]", f"{step}/{total}", f"{int(100 * step / total)}%"]
    if progress.get("trainLoss") is not None:
        parts.append(f"loss {number(progress['trainLoss'])}")
    if progress.get("evalLoss") is not None:
        parts.append(f"eval {number(progress['evalLoss'])}")
    if progress.get("tokensPerSecond") is not None:
        parts.append(f"{progress['tokensPerSecond']:.0f} tok/s")
    if progress.get("etaSeconds") is not None and phase == "Running":
        parts.append(f"ETA {duration(progress['etaSeconds'])}")
    parts.append(phase)
    return " ".join(parts)


def _section(title: str, lines: list[str]) -> list[str]:
    return [f"{title}:"] + [f"  {line}" for line in lines] if lines else []


def _pairs(pairs: list[tuple[str, object]]) -> list[str]:
    shown = [(k, v) for k, v in pairs if v not in (None, "", [], {})]
    width = max((len(k) for k, _ in shown), default=0)
    return [f"{k + ':':<{width + 1}} {v}" for k, v in shown]


def conditions_table(conditions: list[dict], now: dt.datetime) -> list[str]:
    if not conditions:
        return []
    rows = [[c.get("type", ""), c.get("status", ""), c.get("reason", ""), age(c.get("lastTransitionTime"), now),
             c.get("message", "")] for c in conditions]
    return table(["TYPE", "STATUS", "REASON", "AGE", "MESSAGE"], rows).splitlines()


def describe_job(job: dict, now: dt.datetime) -> str:
    meta, spec, status = job["metadata"], job.get("spec") or {}, job.get("status") or {}
    progress = status.get("progress") or {}
    out = _pairs([("Name", meta["name"]), ("Namespace", meta.get("namespace")),
                  ("Created", f"{meta.get('creationTimestamp')} ({age(meta.get('creationTimestamp'), now)} ago)"),
                  ("Phase", status.get("phase", "Pending")), ("Reason", status.get("reason")),
                  ("Message", status.get("message")),
                  ("Base model", f"{(spec.get('baseModel') or {}).get('name')} {(spec.get('baseModel') or {}).get('uri', '')}".strip()),
                  ("Dataset", (spec.get("dataset") or {}).get("uri")),
                  ("Method", (spec.get("method") or {}).get("type", "lora")),
                  ("Output", (spec.get("output") or {}).get("uri")),
                  ("Attempts", status.get("attempts")), ("Trainer Job", status.get("trainerJob")),
                  ("GPU time", duration(status["gpuSeconds"]) if status.get("gpuSeconds") else None),
                  ("Model version", status.get("modelVersion"))])
    if progress:
        out += _section("Progress", [progress_line(job)])
    stats = status.get("datasetStats") or {}
    out += _section("Dataset", _pairs([(k, v) for k, v in stats.items()]))
    out += _section("Conditions", conditions_table(status.get("conditions") or [], now))
    checkpoints = status.get("checkpoints") or []
    if checkpoints:
        keys = [k for k in ("step", "uri", "evalLoss", "time") if any(k in c for c in checkpoints)]
        out += _section("Checkpoints", table([k.upper() for k in keys],
                                             [[number(c.get(k)) if k == "evalLoss" else str(c.get(k, "-")) for k in keys]
                                              for c in checkpoints]).splitlines())
    failure = status.get("lastFailure") or {}
    out += _section("Last failure", _pairs([("Reason", failure.get("reason")), ("Message", failure.get("message")),
                                            ("Retried", failure.get("retryable")), ("Time", failure.get("time"))]))
    result = status.get("result") or {}
    out += _section("Result", _pairs([("Adapter", result.get("adapterUri")), ("Digest", result.get("adapterDigest")),
                                      ("Manifest", result.get("manifestUri")), ("Steps", result.get("steps")),
                                      ("Tokens", result.get("tokens")),
                                      ("Wall time", duration(result["wallSeconds"]) if result.get("wallSeconds") else None)]
                                     + [(f"metric {k}", number(v)) for k, v in sorted((result.get("metrics") or {}).items())]))
    lineage = status.get("lineage") or {}
    out += _section("Lineage", _pairs([("Dataset", lineage.get("datasetUri")), ("Dataset ETag", lineage.get("datasetEtag")),
                                       ("Base model digest", lineage.get("baseModelDigest")),
                                       ("Config hash", lineage.get("configHash")),
                                       ("Trainer image", lineage.get("trainerImage"))] + _dataset_pairs(lineage)))
    return "\n".join(out)


def _dataset_pairs(lineage: dict) -> list:
    """One line per dataset object in lineage.datasets: role, uri, sha256, and version or origin."""
    pairs = []
    for src in lineage.get("datasets") or []:
        extra = f" version {src['versionId']}" if src.get("versionId") else ""
        if src.get("derivedFrom"):
            extra += f" (derived from {src['derivedFrom'].get('uri')})"
        pairs.append((f"Data {src.get('role')}", f"{src.get('uri')} sha256:{src.get('sha256')}{extra}"))
    return pairs


def describe_version(mv: dict, now: dt.datetime) -> str:
    meta, spec, status = mv["metadata"], mv.get("spec") or {}, mv.get("status") or {}
    adapter = spec.get("adapter") or {}
    out = _pairs([("Name", meta["name"]), ("Namespace", meta.get("namespace")),
                  ("Model", spec.get("model")), ("Version", spec.get("version")), ("Stage", spec.get("stage")),
                  ("Phase", status.get("phase", "Pending")), ("Reason", status.get("reason")),
                  ("Message", status.get("message")), ("Served as", status.get("servedName")),
                  ("Adapter", adapter.get("uri") or (f"from job {adapter['fromJob']['name']}" if adapter.get("fromJob") else None)),
                  ("Promoted", status.get("promotedAt")), ("Rolled back", status.get("rolledBackAt"))])
    out += _section("Conditions", conditions_table(status.get("conditions") or [], now))
    lineage = status.get("lineage") or {}
    out += _section("Lineage", _pairs([("Job", lineage.get("jobName")), ("Dataset", lineage.get("datasetUri")),
                                       ("Dataset ETag", lineage.get("datasetEtag")),
                                       ("Base model digest", lineage.get("baseModelDigest")),
                                       ("Config hash", lineage.get("configHash")),
                                       ("Trainer image", lineage.get("trainerImage"))] + _dataset_pairs(lineage)
                                      + [(f"metric {k}", number(v)) for k, v in sorted((lineage.get("metrics") or {}).items())]))
    rollback = status.get("rollback") or {}
    out += _section("Rollback", _pairs([("Query", rollback.get("query")), ("Value", rollback.get("value")),
                                        ("Threshold", rollback.get("threshold")),
                                        ("Restored", rollback.get("restoredVersion"))]))
    return "\n".join(out)


def history_table(versions: list[dict], now: dt.datetime) -> str:
    rows = []
    for mv in sorted(versions, key=lambda v: v["metadata"].get("creationTimestamp", "")):
        status = mv.get("status") or {}
        metrics = (status.get("lineage") or {}).get("metrics") or {}
        shown = ", ".join(f"{k}={number(v)}" for k, v in sorted(metrics.items())) or "-"
        rows.append([mv["spec"].get("version", "-"), mv["metadata"]["name"], mv["spec"].get("stage", "-"),
                     status.get("phase", "Pending"), status.get("promotedAt") or "-", status.get("rolledBackAt") or "-",
                     shown, age(mv["metadata"].get("creationTimestamp"), now)])
    return table(["VERSION", "NAME", "STAGE", "PHASE", "PROMOTED", "ROLLED BACK", "METRICS", "AGE"], rows)
