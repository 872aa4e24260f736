"""Backup folders, the same for hub and agent: a new folder, the files copied in, their manifest, the way back.

The manifest says what kind of backup it is and holds the SHA-256 of every file in it.
``cloud-hub backup`` and ``edge-agent backup`` write one; ``restore`` reads it back and refuses a
folder whose files are missing or changed, before anything in the data folder is touched, then puts
the files back, keeping each one it replaces.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
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


def new_folder(dest: Path, *, error: type[Exception]) -> None:
    """Create the backup folder ``dest`` (mode 0700); it may exist only as an empty folder.

    Raises:
        error: ``dest`` is a file or a folder with files in it, or cannot be created.
    """
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise error(f"{dest} exists and is not an empty folder; give a new folder for the backup")
    try:
        dest.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        raise error(f"cannot create backup folder {dest}: {exc.strerror}") from None


def copy_files(source: Path, dest: Path, names: Iterable[str], *, private: Callable[[str], bool]) -> list[str]:
    """Copy those of ``names`` that are files in ``source`` into ``dest`` (``private`` ones mode 0600); their names."""
    copied = []
    for name in names:
        src = source / name
        if src.is_file():
            shutil.copy2(src, dest / name)
            if private(name):
                os.chmod(dest / name, 0o600)
            copied.append(name)
    return copied


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


def put_back(
    source: Path,
    folder: Path,
    manifest: dict[str, Any],
    *,
    also_aside: Iterable[str] = (),
    private: Callable[[str], bool] = lambda _: True,
) -> tuple[str, list[str]]:
    """Copy a checked backup's files into ``folder``; each file it replaces is kept as ``NAME.before-restore-<time>``.

    Args:
        source: The backup folder (its manifest already read and checked).
        folder: The data folder (existing).
        manifest: The backup's manifest; its ``files`` are copied.
        also_aside: Further names moved aside without a replacement (a database's -wal and -shm files).
        private: Whether a copied file is made mode 0600.

    Returns:
        The time stamp used in the names, and the names moved aside.
    """
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    moved: list[str] = []
    for name in (*manifest["files"], *also_aside):
        current = folder / name
        if current.exists():
            aside = folder / f"{name}.before-restore-{stamp}"
            os.replace(current, aside)
            moved.append(aside.name)
    for name in manifest["files"]:
        shutil.copy2(source / name, folder / name)
        if private(name):
            os.chmod(folder / name, 0o600)
    return stamp, moved
