"""Kubeconfig files for the cluster's identities (admin, components, test users)."""
from __future__ import annotations

import base64
from pathlib import Path

import yaml

from . import pki
from .layout import Layout


def render(server: str, ca_pem: bytes, cert_pem: bytes, key_pem: bytes, user: str) -> dict:
    """A one-cluster, one-user kubeconfig with the credentials embedded."""
    b64 = lambda data: base64.b64encode(data).decode()  # noqa: E731
    return {
        "apiVersion": "v1", "kind": "Config", "current-context": "fto-dev", "preferences": {},
        "clusters": [{"name": "fto-dev", "cluster": {"server": server, "certificate-authority-data": b64(ca_pem)}}],
        "users": [{"name": user, "user": {"client-certificate-data": b64(cert_pem), "client-key-data": b64(key_pem)}}],
        "contexts": [{"name": "fto-dev", "context": {"cluster": "fto-dev", "user": user}}],
    }


def write_identity(layout: Layout, path: Path, user: str, groups: tuple[str, ...] = ()) -> Path:
    """Mints a client certificate (CN=user, O=groups) and writes a kubeconfig for it."""
    safe = user.replace(":", "_").replace("/", "_")
    cert, key = pki.issue(layout.pki_dir, f"user-{safe}", user, organizations=groups)
    config = render(layout.apiserver_url, (layout.pki_dir / "ca.crt").read_bytes(),
                    cert.read_bytes(), key.read_bytes(), user)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    path.chmod(0o600)
    return path


def mint_user(layout: Layout, user: str, groups: tuple[str, ...] = ()) -> Path:
    """A kubeconfig for a (test) user with no rights but those RBAC grants it or its groups."""
    return write_identity(layout, layout.kubeconfig_for(user.replace(":", "_")), user, groups)
