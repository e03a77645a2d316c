"""Runs one container's command: `python -m devcluster.processnode.launch SPEC.json`.

In a private mount and UTS namespace (so `hostname` is the pod's), bind-mounts each volume folder at its mountPath (and the
termination-message file at its path), changes to the working directory, and execs the
command - so the program sees its Secrets, tokens and emptyDirs where a real pod would,
while the host's mount table is untouched. Mount points that do not exist on the host are
created there as empty folders or files (that is the only trace left on the host).
"""
from __future__ import annotations

import ctypes
import errno
import json
import os
import sys

MS_RDONLY, MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 1, 32, 4096, 16384, 1 << 18
CLONE_NEWNS, CLONE_NEWUTS = 0x00020000, 0x04000000
_libc = ctypes.CDLL(None, use_errno=True)


def _check(rc: int, what: str) -> None:
    if rc != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def _mount(source: str | None, target: str, flags: int) -> None:
    _check(_libc.mount(source.encode() if source else None, target.encode(), None, flags, None),
           f"mount {source} -> {target}")


def _ensure_target(is_dir: bool, target: str) -> None:
    if is_dir:
        os.makedirs(target, exist_ok=True)
    else:
        os.makedirs(os.path.dirname(target) or "/", exist_ok=True)
        if not os.path.exists(target):
            open(target, "a").close()


def enter_namespaces(mounts: list, hostname: str) -> None:
    """A private mount and UTS namespace; mounts: [source, target, read_only] with host sources."""
    _check(_libc.unshare(CLONE_NEWNS | CLONE_NEWUTS), "unshare(CLONE_NEWNS|CLONE_NEWUTS)")
    name = hostname.encode()
    _check(_libc.sethostname(name, len(name)), "sethostname")
    _mount("none", "/", MS_REC | MS_PRIVATE)
    ordered = sorted(mounts, key=lambda m: m[1].rstrip("/").count("/"))
    # Hold every source open before mounting anything: a volume mounted at /tmp must not hide the
    # sources of the volumes mounted after it (they live in the node's state folder).
    held = [(os.open(src, os.O_PATH), os.path.isdir(src), target, ro) for src, target, ro in ordered]
    for fd, is_dir, target, read_only in held:
        _ensure_target(is_dir, target)
        _mount(f"/proc/self/fd/{fd}", target, MS_BIND | MS_REC)
        if read_only:
            _mount(None, target, MS_BIND | MS_REMOUNT | MS_RDONLY)
        os.close(fd)


def main() -> None:
    if sys.argv[1] == "--probe":  # can this machine give containers their own mount namespace?
        try:
            _check(_libc.unshare(CLONE_NEWNS | CLONE_NEWUTS), "unshare(CLONE_NEWNS|CLONE_NEWUTS)")
        except OSError as err:
            print(err, file=sys.stderr)
            sys.exit(1)
        return
    with open(sys.argv[1]) as f:
        spec = json.load(f)
    try:
        home = os.open(spec["cwd"], os.O_PATH) if os.path.isdir(spec["cwd"]) else None
        enter_namespaces(spec["mounts"], spec["hostname"])
        for note in spec.get("notes", []):
            print(f"process-node: {note}", file=sys.stderr, flush=True)
        try:
            os.chdir(spec["cwd"])
        except OSError:
            if home is None:
                raise
            os.fchdir(home)  # the working dir was under a path a volume now covers
    except OSError as err:
        print(f"process-node: cannot set up the container: {err}", file=sys.stderr, flush=True)
        os._exit(128)
    try:
        os.execvpe(spec["argv"][0], spec["argv"], spec["env"])
    except OSError as err:
        code = 127 if err.errno == errno.ENOENT else 126
        print(f"process-node: exec {spec['argv'][0]!r}: {err.strerror}", file=sys.stderr, flush=True)
        os._exit(code)


if __name__ == "__main__":
    main()
