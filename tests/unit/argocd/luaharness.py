"""Runs an Argo CD health script with the Debian lua5.1 interpreter, the way Argo CD runs it:
the object as the global `obj`, the script's return value read as {status, message}."""
from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
HEALTH = ROOT / "deploy" / "argocd" / "health"


def lua_literal(value) -> str:
    """JSON value -> Lua table constructor (null becomes nil, as gopher-lua's JSON decoding does)."""
    if value is None:
        return "nil"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\r", "\\r")
        return f'"{escaped}"'
    if isinstance(value, list):
        return "{" + ", ".join(lua_literal(v) for v in value) + "}"
    return "{" + ", ".join(f"[{lua_literal(k)}] = {lua_literal(v)}" for k, v in value.items()) + "}"


def health(script: str, obj: dict) -> dict:
    """{'status': ..., 'message': ...} as the script returns it for obj."""
    lua = shutil.which("lua5.1")
    if lua is None:
        raise RuntimeError("lua5.1 is missing: apt-get install lua5.1 (hack/setup does)")
    program = (f"obj = {lua_literal(obj)}\n"
               f"local hs = (function()\n{(HEALTH / script).read_text()}\nend)()\n"
               'io.write(hs.status or "", "\\0", hs.message or "")\n')
    result = subprocess.run([lua, "-"], input=program, capture_output=True, text=True, timeout=30)
    if result.returncode != 0:
        raise AssertionError(f"{script} failed: {result.stderr}")
    status, message = result.stdout.split("\0", 1)
    return {"status": status, "message": message}


def load(path: Path) -> dict:
    return json.loads(path.read_text())
