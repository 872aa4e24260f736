"""Settings files with environment overrides, validated by pydantic-settings (``agent.toml``, ``hub.toml``).

Precedence, highest first: command-line flags, ``<PREFIX><FIELD>`` environment variables, the TOML
file (one table of it, e.g. ``[hub]``), the defaults. An unknown or misspelt key in the file is refused
naming the key (with the closest known one); a bad value is refused naming the key, where it came
from and why. Environment variables with the prefix that match no setting are reported by
``config check`` (they are not errors at start-up: other tools share the prefix).
"""

from __future__ import annotations

import difflib
import os
import tomllib
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, TypeVar

from pydantic import ValidationError
from pydantic_settings import BaseSettings, InitSettingsSource, PydanticBaseSettingsSource

from sync_protocol._exceptions import StoreSyncError

S = TypeVar("S", bound=BaseSettings)


class SettingsError(StoreSyncError):
    """A settings file or variable is unreadable, unknown or invalid (the message names it)."""

    code = "config"


def read_table(path: Path, table: str | None) -> dict[str, Any]:
    """The TOML file's ``[table]`` (or the whole file when ``table`` is None); empty when absent.

    Raises:
        SettingsError: the file cannot be read or is not TOML, or the table is not a table.
    """
    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SettingsError(f"config file {path} does not exist") from None
    except OSError as exc:
        raise SettingsError(f"cannot read config file {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise SettingsError(f"config file {path} is not valid TOML: {exc}") from None
    if table is None:
        return doc
    section = doc.get(table, {})
    if not isinstance(section, dict):
        raise SettingsError(f"{path}: [{table}] must be a table")
    return section


def config_path(explicit: str | os.PathLike[str] | None, env: str, default: Path) -> Path | None:
    """The settings file: ``explicit`` (a flag), else ``$env``, else ``default`` when it exists, else None."""
    if explicit:
        return Path(explicit)
    if os.environ.get(env):
        return Path(os.environ[env])
    return default if default.is_file() else None


def _suggest(name: str, known: Iterable[str]) -> str:
    close = difflib.get_close_matches(name, list(known), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def unknown_env(prefix: str, settings_cls: type[BaseSettings], also: Iterable[str] = ()) -> list[str]:
    """``NAME (did you mean ...)`` for each ``PREFIX*`` variable that names no setting and is not in ``also``."""
    fields = {f"{prefix}{name}".upper() for name in settings_cls.model_fields}
    allowed = fields | {a.upper() for a in also}
    out = []
    for name in sorted(os.environ):
        if name.upper().startswith(prefix.upper()) and name.upper() not in allowed:
            out.append(name + _suggest(name.upper(), fields))
    return out


def load(
    settings_cls: type[S],
    *,
    file: Path | None,
    table: str | None,
    flags: Mapping[str, Any] | None = None,
) -> S:
    """Build ``settings_cls`` from flags, environment (its ``env_prefix``), the file's table and defaults.

    Args:
        settings_cls: A ``BaseSettings`` subclass (``extra="forbid"``).
        file: The TOML file, or None.
        table: The table of the file holding these settings (None: the whole file).
        flags: Command-line values; None values are ignored.

    Raises:
        SettingsError: naming the unknown key, or the invalid key with its source and reason.
    """
    from_file = read_table(file, table) if file is not None else {}
    where = f"{file}" + (f" [{table}]" if table else "") if file is not None else "defaults"
    known = settings_cls.model_fields
    for key in from_file:
        if key not in known:
            raise SettingsError(
                f"{where}: unknown key {key!r}{_suggest(key, known)}; known keys: {', '.join(sorted(known))}"
            )
    given = {k: v for k, v in (flags or {}).items() if v is not None}

    class _Sourced(settings_cls):  # type: ignore[valid-type,misc]
        @classmethod
        def settings_customise_sources(
            cls,
            settings_cls: type[BaseSettings],
            init_settings: PydanticBaseSettingsSource,
            env_settings: PydanticBaseSettingsSource,
            dotenv_settings: PydanticBaseSettingsSource,
            file_secret_settings: PydanticBaseSettingsSource,
        ) -> tuple[PydanticBaseSettingsSource, ...]:
            return (init_settings, env_settings, InitSettingsSource(settings_cls, init_kwargs=from_file))

    try:
        built = _Sourced(**given)
    except ValidationError as exc:
        prefix = str(settings_cls.model_config.get("env_prefix", ""))
        parts = []
        for err in exc.errors(include_input=False, include_url=False):
            key = ".".join(str(p) for p in err.get("loc", ())) or "value"
            field = key.split(".", 1)[0]
            if field in given:
                source = "command line"
            elif f"{prefix}{field}".upper() in {n.upper() for n in os.environ}:
                source = f"${prefix}{field}".upper()
            elif field in from_file:
                source = where
            else:
                source = "settings"
            parts.append(f"{key} ({source}): {err.get('msg', 'invalid')}")
        raise SettingsError("; ".join(parts)) from None
    return built
