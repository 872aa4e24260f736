"""The manifest of a backup folder: what kind of backup it is and the SHA-256 of every file in it.

``cloud-hub backup`` and ``edge-agent backup`` write one; ``restore`` reads it back and refuses a
folder whose files are missing or changed, before anything in the data folder is touched.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

MANIFEST = "manifest.json"


def sha256(path: Path) -> str:
    """The SHA-256 (hex) of a file, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def write_manifest(dest: Path, manifest: dict[str, Any], files: Iterable[str]) -> dict[str, Any]:
    """Add ``files`` (names in ``dest``) with their SHA-256 to ``manifest`` and write it to ``dest``."""
    manifest = {**manifest, "files": {name: sha256(dest / name) for name in files}}
    (dest / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def read_manifest(folder: Path, *, kind: str, what: str, error: type[Exception]) -> dict[str, Any]:
    """The manifest of ``folder``, every file checked against its SHA-256.

    Args:
        folder: The backup folder.
        kind: The manifest's expected ``kind`` (e.g. ``"storesync-hub-backup"``).
        what: Words for the message (``"a hub backup"``).
        error: The caller's configuration error class, raised with a one-line message.

    Raises:
        error: no readable manifest, a manifest of another kind, or a file missing or changed.
    """
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
    except (OSError, ValueError):
        raise error(f"{folder} is not {what} (no readable {MANIFEST})") from None
    if not isinstance(manifest, dict) or manifest.get("kind") != kind:
        raise error(f"{folder} is not {what} ({MANIFEST} is of another kind)")
    for name, digest in dict(manifest.get("files", {})).items():
        path = folder / name
        if not path.is_file() or sha256(path) != digest:
            raise error(f"{folder}: {name} is missing or does not match the manifest; the backup is damaged")
    return manifest
