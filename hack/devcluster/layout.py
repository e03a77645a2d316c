"""Where the cluster's binaries, state and ports are: one frozen description, no I/O."""
from __future__ import annotations

import dataclasses
import os
from pathlib import Path

HACK_DIR = Path(__file__).resolve().parent.parent
VERSIONS_FILE = HACK_DIR / "versions.env"


def read_versions(path: Path = VERSIONS_FILE) -> dict[str, str]:
    """Parses the KEY=VALUE lines of hack/versions.env (comments and blanks skipped)."""
    versions = {}
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, _, value = line.partition("=")
        versions[key.strip()] = value.strip()
    return versions


def cache_dir() -> Path:
    if os.environ.get("FTO_CACHE_DIR"):
        return Path(os.environ["FTO_CACHE_DIR"])
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg) / "finetune-operator"


@dataclasses.dataclass(frozen=True)
class Ports:
    etcd_client: int = 12379
    etcd_peer: int = 12380
    apiserver: int = 16443
    controller_manager: int = 16257
    scheduler: int = 16259
    kwok: int = 16280
    minio: int = 19000
    minio_console: int = 19001
    process_node: int = 16250
    process_node_kubelet: int = 16251
    prometheus: int = 19090
    prometheus_sd: int = 19091

    @classmethod
    def from_env(cls) -> "Ports":
        """FTO_PORT_BASE=N shifts every port by N - 12000, so two clusters can coexist.

        The shifted ports must stay below Linux's ephemeral range (32768+), where outgoing
        connections take their local ports and a listener can find its port taken.
        """
        base = os.environ.get("FTO_PORT_BASE")
        if not base:
            return cls()
        shift = int(base) - 12000
        highest = max(getattr(cls(), f.name) for f in dataclasses.fields(cls)) + shift
        lowest = min(getattr(cls(), f.name) for f in dataclasses.fields(cls)) + shift
        if not (1024 < lowest and highest < 32768):
            raise ValueError(f"FTO_PORT_BASE={base} puts ports outside 1025-32767; pick a base from 2000 to 25000")
        return cls(**{f.name: getattr(cls(), f.name) + shift for f in dataclasses.fields(cls)})


@dataclasses.dataclass(frozen=True)
class Layout:
    """Everything a component needs to know about the cluster's files and addresses."""

    state_dir: Path
    bin_dir: Path
    versions: dict
    ports: Ports
    host: str = "127.0.0.1"

    @property
    def process_node_pod_cidr(self) -> str:
        """Pod IPs of the process node. Clusters with different FTO_PORT_BASE get different
        /16s (127.2.0.0/16 for the default), so their pods never bind the same address."""
        return f"127.{2 + ((self.ports.apiserver - Ports().apiserver) // 1000) % 50}.0.0/16"

    @classmethod
    def default(cls) -> "Layout":
        cache = cache_dir()
        state = Path(os.environ.get("FTO_CLUSTER_DIR") or cache / "cluster")
        return cls(state_dir=state, bin_dir=cache / "bin", versions=read_versions(), ports=Ports.from_env())

    def binary(self, component: str, name: str | None = None) -> Path:
        """component is a versions.env prefix (KUBERNETES, ETCD, KWOK, MINIO, HELM)."""
        version = self.versions[f"{component}_VERSION"]
        return self.bin_dir / f"{component.lower()}-{version}" / (name or component.lower())

    @property
    def pki_dir(self) -> Path:
        return self.state_dir / "pki"

    @property
    def logs_dir(self) -> Path:
        return self.state_dir / "logs"

    @property
    def run_dir(self) -> Path:
        return self.state_dir / "run"

    @property
    def kubeconfig(self) -> Path:
        return self.state_dir / "kubeconfig"

    @property
    def apiserver_url(self) -> str:
        return f"https://{self.host}:{self.ports.apiserver}"

    @property
    def s3_endpoint(self) -> str:
        return f"http://{self.host}:{self.ports.minio}"

    @property
    def prometheus_url(self) -> str:
        return f"http://{self.host}:{self.ports.prometheus}"

    def kubeconfig_for(self, identity: str) -> Path:
        return self.state_dir / "identities" / f"{identity}.kubeconfig"
