"""Materialises a pod's volumes as folders under the pod's own directory.

emptyDir, Secret, ConfigMap, downwardAPI, projected (service-account token via the
TokenRequest API, ConfigMap, Secret, downwardAPI) and hostPath are supported; anything else
raises VolumeError naming the volume, which the pod shows as a waiting reason.
"""
from __future__ import annotations

import datetime
import os
import time
from pathlib import Path
from typing import Callable, Optional

from .plan import ConfigError, field_ref

Lookup = Callable[[str, str, str], Optional[dict]]
TokenMinter = Callable[[dict, str, int], tuple]  # (pod, audience, seconds) -> (token, expiry epoch)


class VolumeError(RuntimeError):
    pass


def _write(folder: Path, files: dict, mode: int) -> None:
    for rel, data in files.items():
        path = folder / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_bytes(data)
        tmp.chmod(mode)
        os.replace(tmp, path)


def _keyed(kind: str, ref: dict, namespace: str, lookup: Lookup, volume: str) -> dict:
    """Files of a Secret/ConfigMap source: all keys, or just `items` (key -> path)."""
    name = ref.get("secretName") or ref.get("name")
    data = lookup(kind, namespace, name)
    if data is None:
        if ref.get("optional"):
            return {}
        raise VolumeError(f'MountVolume.SetUp failed for volume "{volume}": {kind.lower()} "{name}" not found')
    if not ref.get("items"):
        return dict(data)
    files = {}
    for item in ref["items"]:
        if item["key"] not in data:
            if ref.get("optional"):
                continue
            raise VolumeError(f'MountVolume.SetUp failed for volume "{volume}": '
                              f'key "{item["key"]}" not in {kind.lower()} "{name}"')
        files[item["path"]] = data[item["key"]]
    return files


def _downward(pod: dict, items: list, volume: str) -> dict:
    files = {}
    for item in items:
        if "fieldRef" not in item:
            raise VolumeError(f'volume "{volume}": only fieldRef items of downwardAPI are supported')
        try:
            files[item["path"]] = field_ref(pod, item["fieldRef"]["fieldPath"]).encode()
        except ConfigError as err:
            raise VolumeError(f'volume "{volume}": {err}') from None
    return files


class PodVolumes:
    """The volumes of one pod. `refresh()` renews service-account tokens at 80% of their lifetime."""

    def __init__(self, pod: dict, root: Path, lookup: Lookup, mint_token: TokenMinter):
        self.pod, self.root, self.lookup, self.mint_token = pod, root, lookup, mint_token
        self.paths: dict[str, str] = {}
        self._tokens: list[tuple] = []  # (folder, relpath, audience, seconds, mode, refresh-at epoch)

    def setup(self) -> dict[str, str]:
        ns = self.pod["metadata"]["namespace"]
        for vol in self.pod["spec"].get("volumes") or []:
            name = vol["name"]
            folder = self.root / name
            if "hostPath" in vol:
                path = Path(vol["hostPath"]["path"])
                if vol["hostPath"].get("type") in ("DirectoryOrCreate",):
                    path.mkdir(parents=True, exist_ok=True)
                if not path.exists():
                    raise VolumeError(f'volume "{name}": hostPath {path} does not exist')
                self.paths[name] = str(path)
                continue
            folder.mkdir(parents=True, exist_ok=True)
            self.paths[name] = str(folder)
            if "emptyDir" in vol:
                continue
            if "secret" in vol:
                _write(folder, _keyed("Secret", vol["secret"], ns, self.lookup, name),
                       vol["secret"].get("defaultMode", 0o644))
            elif "configMap" in vol:
                _write(folder, _keyed("ConfigMap", vol["configMap"], ns, self.lookup, name),
                       vol["configMap"].get("defaultMode", 0o644))
            elif "downwardAPI" in vol:
                _write(folder, _downward(self.pod, vol["downwardAPI"].get("items") or [], name),
                       vol["downwardAPI"].get("defaultMode", 0o644))
            elif "projected" in vol:
                self._projected(folder, vol["projected"], ns, name)
            else:
                kind = next((k for k in vol if k != "name"), "unknown")
                raise VolumeError(f'volume "{name}": {kind} volumes are not supported on the process node '
                                  "(supported: emptyDir, secret, configMap, downwardAPI, projected, hostPath)")
        return self.paths

    def _projected(self, folder: Path, spec: dict, ns: str, volume: str) -> None:
        mode = spec.get("defaultMode", 0o644)
        for source in spec.get("sources") or []:
            if "serviceAccountToken" in source:
                sat = source["serviceAccountToken"]
                self._tokens.append([folder, sat["path"], sat.get("audience", ""),
                                     sat.get("expirationSeconds", 3607), mode, 0.0])
            elif "secret" in source:
                _write(folder, _keyed("Secret", source["secret"], ns, self.lookup, volume), mode)
            elif "configMap" in source:
                _write(folder, _keyed("ConfigMap", source["configMap"], ns, self.lookup, volume), mode)
            elif "downwardAPI" in source:
                _write(folder, _downward(self.pod, source["downwardAPI"].get("items") or [], volume), mode)
            else:
                raise VolumeError(f'volume "{volume}": projected source {sorted(source)} is not supported')
        self.refresh()

    def refresh(self) -> None:
        for token in self._tokens:
            folder, rel, audience, seconds, mode, refresh_at = token
            if time.time() < refresh_at:
                continue
            value, expires = self.mint_token(self.pod, audience, seconds)
            _write(folder, {rel: value.encode()}, mode)
            issued = time.time()
            token[5] = issued + 0.8 * (expires - issued)


def expiry_epoch(ts) -> float:
    if isinstance(ts, datetime.datetime):
        return ts.timestamp()
    return datetime.datetime.fromisoformat(str(ts).replace("Z", "+00:00")).timestamp()
