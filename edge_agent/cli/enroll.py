"""``edge-agent init``, ``enroll`` and ``register``: the agent's key, its identity at the hub, register tokens.

``enroll`` with a current identity starts a new epoch under a new key (records not synced yet are
carried into it with ``--force``); a lost answer is retried with the same staged key.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import ssl
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from storesync_runtime import cli as common_cli
from sync_protocol import keys
from sync_protocol._exceptions import StoreSyncError
from sync_protocol.wire import EnrollRequest, EnrollResponse

from .. import __version__
from .._exceptions import ConfigError, EnrollRefused, HubRejected, HubUnavailable
from ..config import HUB_CA_FILE, AgentConfig, check_hub_transport, hub_tls, parse_hub_urls, resolve_data_dir
from ..drops.cli import abs_path
from ..store import Identity, Outbox
from ..transport import HubClient
from . import _common


def add_init(sub: Any, common: argparse.ArgumentParser) -> None:
    """``edge-agent init``."""
    _common.command(sub, common, "init", cmd_init, "create the agent key and the outbox")


def add_enroll(sub: Any, common: argparse.ArgumentParser) -> None:
    """``edge-agent enroll``."""
    p = _common.command(sub, common, "enroll", cmd_enroll, "enroll with the hub using a one-time token", json=False)
    p.add_argument(
        "--hub",
        required=True,
        action="append",
        help="hub base URL, e.g. https://hub.example.com; repeat for replicas (failover in this order)",
    )
    p.add_argument("--token", required=True, help="one-time enrollment token from 'cloud-hub store add'")
    p.add_argument("--hub-ca", type=abs_path, default=None, help="CA file (or the hub's own certificate) to trust")
    p.add_argument("--insecure-http", action="store_true", help="allow plain http:// to a hub beyond loopback")
    p.add_argument("--force", action="store_true", help="enroll even though records are not synced")
    p.add_argument("--json", action="store_true", help=_common.JSON_HELP)


def add_register(sub: Any, common: argparse.ArgumentParser) -> None:
    """``edge-agent register add|list|remove``."""
    p = _common.command(
        sub, common, "register", cmd_register, "register tokens for a capture API beyond loopback", json=False
    )
    p.add_argument("action", choices=("add", "list", "remove"), help="add prints a new token; list; remove")
    p.add_argument("register_id", nargs="?", metavar="REGISTER", help="register id, e.g. R2 (add, remove)")


def cmd_init(args: argparse.Namespace) -> int:
    cfg = _common.config(args)
    if cfg.key_path.exists():
        raise ConfigError(f"{cfg.key_path} already exists; refusing to overwrite the agent key")
    try:
        cfg.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        key = keys.generate()
        keys.save_private_key(key, cfg.key_path)
    except OSError as exc:
        raise ConfigError(
            f"cannot create the agent data folder {cfg.data_dir}: {exc.strerror}; "
            "pick a folder this user can write (--data-dir) or run as the service user"
        ) from None
    Outbox(cfg.db_path).close()
    kid = keys.key_id(key)
    if args.json:
        _common.print_json({"key_id": kid, "public_key": keys.public_hex(key), "data_dir": str(cfg.data_dir)})
    else:
        print(f"initialised {cfg.data_dir}: key_id {kid}")
    return 0


def _staged_key(cfg: AgentConfig) -> tuple[keys.Ed25519PrivateKey, Path]:
    """The key staged for a new epoch: the one a lost enrollment answer left behind, else a new one.

    Reusing the staged key makes a retried enrollment idempotent: the hub answers a retry with the same
    token and key with the enrollment it already made.
    """
    staged = cfg.key_path.with_name(cfg.key_path.name + ".new")
    if staged.exists():
        try:
            return keys.load_private_key(staged), staged
        except StoreSyncError:
            staged.unlink(missing_ok=True)
    key = keys.generate()
    keys.save_private_key(key, staged)
    return key, staged


def cmd_enroll(args: argparse.Namespace) -> int:
    cfg = _common.config(args, hub_ca=args.hub_ca, insecure_http=args.insecure_http or None)
    key = cfg.load_key()
    urls = parse_hub_urls(args.hub)
    for url in urls:
        check_hub_transport(url, cfg.insecure_http)
    verify = hub_tls(cfg)
    hub_url = " ".join(urls)
    try:
        request = EnrollRequest(
            token=args.token.strip(),
            public_key=keys.public_hex(key),
            hostname=socket.gethostname()[:255],
            agent_version=__version__,
        )
    except ValidationError as exc:
        raise ConfigError(
            f"--token: {common_cli.validation_message(exc)}; copy the whole token printed by 'cloud-hub store add'"
        ) from None
    staged: Path | None = None
    with Outbox(cfg.db_path, create=False) as outbox:
        current = outbox.identity()
        if current is not None:
            head, _ = outbox.head(current.epoch)
            pending = head - outbox.acked_through()
            if pending > 0 and not args.force:
                raise EnrollRefused(
                    f"{pending} records of {current.store_id} epoch {current.epoch} are not synced yet; "
                    "sync them first or pass --force (they are then carried into the new epoch and sent)"
                )
            # A new epoch needs a new key: the hub binds each key to one enrollment.
            key, staged = _staged_key(cfg)
            request = request.model_copy(update={"public_key": keys.public_hex(key)})
        try:
            answer = _enroll_any(urls, request, verify)
            if answer.key_id != keys.key_id(key):
                raise ConfigError(f"hub bound key {answer.key_id}, but our key is {keys.key_id(key)}")
            keys.public_from_hex(answer.hub_public_key)
        except HubRejected:
            # A definite refusal: the staged key was not bound. Anything else (no answer) keeps it for the retry.
            if staged is not None:
                staged.unlink(missing_ok=True)
            raise
        if staged is not None and current is not None:
            archive = cfg.key_path.with_name(f"{cfg.key_path.name}.epoch{current.epoch}")
            if not archive.exists():
                os.link(cfg.key_path, archive)
            os.replace(staged, cfg.key_path)
        if cfg.hub_ca is not None:  # kept with the identity: run and sync verify the hub the same way
            shutil.copyfile(cfg.hub_ca, cfg.data_dir / HUB_CA_FILE)
        carried = outbox.set_identity(
            Identity(
                store_id=answer.store_id,
                epoch=answer.epoch,
                key_id=answer.key_id,
                public_key=keys.public_hex(key),
                hub_url=hub_url,
                hub_public_key=answer.hub_public_key,
                hub_key_id=answer.hub_key_id,
                tz=answer.tz,
            ),
            key=key if staged is not None else None,
        )
    from ..backup import clear_marker

    clear_marker(cfg)  # a restored outbox writes a new epoch from now on
    if args.json:
        _common.print_json({**answer.model_dump(), "hub_url": hub_url, "carried_forward": carried})
    else:
        print(
            f"enrolled store {answer.store_id} epoch {answer.epoch} (key {answer.key_id}, tz {answer.tz}) at {hub_url}"
        )
        if carried:
            print(f"{carried} records the hub had not acknowledged were carried into epoch {answer.epoch}")
    return 0


def _enroll_any(urls: Sequence[str], request: EnrollRequest, verify: ssl.SSLContext | bool) -> EnrollResponse:
    """Enroll at the first of the hub URLs that answers (a refusal is final: the token is spent or wrong)."""
    for i, url in enumerate(urls):
        try:
            with HubClient(url, verify=verify) as client:
                return client.enroll(request)
        except HubUnavailable as exc:
            if i == len(urls) - 1:
                raise
            print(f"edge-agent: {url} unavailable ({exc}); trying {urls[i + 1]}", file=sys.stderr)
    raise ConfigError("no hub URL given")  # pragma: no cover - argparse requires --hub


def cmd_register(args: argparse.Namespace) -> int:
    """``edge-agent register add|list|remove [REGISTER]``: a token is printed once, stored hashed."""
    from .. import registers

    data_dir = resolve_data_dir(args.data_dir)
    if args.action == "list":
        for rid, added in registers.listing(data_dir):
            print(f"{rid}\tadded {added}")
        return 0
    if not args.register_id:
        raise ConfigError(f"register {args.action}: name the register, e.g. 'edge-agent register {args.action} R2'")
    if args.action == "add":
        token = registers.add(data_dir, args.register_id)
        print(token)
        print(
            f"register {args.register_id}: send 'Authorization: Bearer <this token>'; it is shown only now",
            file=sys.stderr,
        )
        return 0
    if not registers.remove(data_dir, args.register_id):
        raise ConfigError(f"register {args.register_id} has no token")
    print(f"register {args.register_id}: token removed")
    return 0
