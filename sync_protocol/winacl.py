"""Key-file permission check on Windows: the file's ACL, since Windows has no ``chmod 600``.

A key file is too open when its DACL allows reading to anyone but the owner, SYSTEM and
Administrators: ``Everyone``, ``Users``, ``Authenticated Users``, ``Guests``, or any other account.
``install.ps1`` sets exactly that ACL (``icacls /inheritance:r``). :func:`too_open` is the decision
(tested on every platform); :func:`read_acl` reads the DACL with pywin32 (run only on Windows).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

#: Well-known SIDs that may hold a key file: SYSTEM, Administrators.
TRUSTED_SIDS = frozenset({"S-1-5-18", "S-1-5-32-544"})
FILE_READ_DATA = 0x0001
GENERIC_READ = 0x80000000
GENERIC_ALL = 0x10000000
ACCESS_ALLOWED = 0


def too_open(aces: Iterable[tuple[int, int, str]], owner_sid: str) -> list[str]:
    """SIDs other than the owner, SYSTEM and Administrators that an allow-ACE lets read the file.

    Args:
        aces: ``(ace_type, access_mask, sid)`` of each ACE in the DACL.
        owner_sid: The file owner's SID (the service account).
    """
    out = []
    for ace_type, mask, sid in aces:
        if ace_type != ACCESS_ALLOWED or sid == owner_sid or sid in TRUSTED_SIDS:
            continue
        if mask & (FILE_READ_DATA | GENERIC_READ | GENERIC_ALL):
            out.append(sid)
    return out


def read_acl(path: Path) -> tuple[list[tuple[int, int, str]], str]:  # pragma: no cover - Windows only
    """``(aces, owner_sid)`` of a file, with pywin32."""
    import ntsecuritycon  # noqa: F401
    import win32security

    sd = win32security.GetFileSecurity(
        str(path), win32security.OWNER_SECURITY_INFORMATION | win32security.DACL_SECURITY_INFORMATION
    )
    owner = win32security.ConvertSidToStringSid(sd.GetSecurityDescriptorOwner())
    dacl = sd.GetSecurityDescriptorDacl()
    aces = []
    if dacl is None:  # a NULL DACL grants everyone everything
        return [(ACCESS_ALLOWED, GENERIC_ALL, "S-1-1-0")], owner
    for i in range(dacl.GetAceCount()):
        (ace_type, _flags), mask, sid = dacl.GetAce(i)
        aces.append((ace_type, mask, win32security.ConvertSidToStringSid(sid)))
    return aces, owner


def check_key_file(path: Path) -> str | None:  # pragma: no cover - Windows only
    """A message when others may read ``path``; None when the ACL is tight (or pywin32 is missing)."""
    try:
        aces, owner = read_acl(path)
    except ImportError:
        return None
    others = too_open(aces, owner)
    if not others:
        return None
    return (
        f'{path} can be read by {", ".join(others)}; run: icacls "{path}" /inheritance:r /grant:r '
        '"SYSTEM:(F)" "Administrators:(F)" "storesync:(R)"'
    )
