"""What every StoreSync command does with errors: one or two lines on stderr and a documented exit code.

Exit codes (README "Exit codes"):

==== =========================================================================================
0    success
1    the thing checked is not fine: ``status`` not in sync or blocked, ``verify`` failed, a capture
     or an import refused records, ``config check`` found problems
2    usage or configuration error: a bad option, a bad config file, a missing or foreign data
     folder, a file that cannot be read or written
3    the hub could not be reached, or refused the request
4    the data folder is in use by another process (the lock holder is named)
70   internal error (a bug): one line; ``STORESYNC_DEBUG=1`` prints the traceback
130  interrupted (Ctrl-C); an interrupted import resumes on the next run
141  stdout was closed early (``status | head``); nothing is printed
==== =========================================================================================
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import traceback
from collections.abc import Callable, Iterable, Sequence
from datetime import date
from pathlib import Path
from typing import Any

from .proclock import LockHeld

EXIT_OK = 0
EXIT_PROBLEM = 1
EXIT_USAGE = 2
EXIT_HUB = 3
EXIT_LOCKED = 4
EXIT_INTERNAL = 70
EXIT_INTERRUPTED = 130
EXIT_PIPE = 141
DEBUG_ENV = "STORESYNC_DEBUG"
LOG_LEVELS = ("debug", "info", "warning", "error")


class Parser(argparse.ArgumentParser):
    """Argument errors are one line and exit code 2, like every other usage error."""

    def error(self, message: str) -> Any:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def log_args(p: argparse.ArgumentParser, setting: str) -> None:
    """``--log-level`` and ``--log-format`` (default: the ``setting`` named, else info and text)."""
    p.add_argument("--log-level", choices=LOG_LEVELS, default=None, help=f"default: {setting} or info")
    p.add_argument("--log-format", choices=("text", "json"), default=None, help="text (default) or json lines")


def iso_date(text: str) -> str:
    """An argparse ``type``: a ``YYYY-MM-DD`` date, as ISO text.

    Raises:
        argparse.ArgumentTypeError: not such a date (argparse names the option).
    """
    try:
        return date.fromisoformat(text).isoformat()
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date YYYY-MM-DD") from None


def export_format(fmt: str | None, out: Path) -> str:
    """``--format``, else from the file suffix (.db/.sqlite, .csv), else jsonl."""
    if fmt:
        return fmt
    return {".db": "sqlite", ".sqlite": "sqlite", ".csv": "csv"}.get(out.suffix.lower(), "jsonl")


def print_table(head: Sequence[str], rows: Iterable[Sequence[str]]) -> None:
    """Columns padded to their widest cell, two spaces apart; the last column (free text) is not padded."""
    table = [tuple(head), *(tuple(r) for r in rows)]
    widths = [max(len(r[i]) for r in table) for i in range(len(head) - 1)]
    for r in table:
        print("  ".join([*(c.ljust(w) for c, w in zip(r, widths, strict=False)), r[-1]]).rstrip())


def print_config_check(
    doc: dict[str, Any], lines: Iterable[tuple[str, Any]], problems: list[str], warnings: list[str], *, json_mode: bool
) -> int:
    """Finish and print a ``config check`` result; its exit code (0 valid, 1 problems found).

    Args:
        doc: ``config_file``, ``data_dir`` and what was read; ``ok``, ``problems`` and ``warnings`` are added.
        lines: ``(label, value)`` for the text form, one line each; labels come padded.
        problems: What makes the configuration unusable.
        warnings: What looks wrong but does not stop the program.
        json_mode: Print ``doc`` as one JSON object instead of lines.
    """
    doc.update(ok=not problems, problems=problems, warnings=warnings)
    if json_mode:
        print(json.dumps(doc))
    else:
        print(f"config file  {doc['config_file'] or '(none: defaults and environment)'}")
        for label, value in lines:
            print(f"{label} {value}")
        for w in warnings:
            print(f"warning: {w}")
        for p in problems:
            print(f"problem: {p}")
        print("config OK" if not problems else f"{len(problems)} problem(s)")
    return 0 if not problems else 1


def validation_message(exc: Any) -> str:
    """A pydantic ``ValidationError`` as ``field: reason; field: reason`` (the input is never echoed)."""
    parts = []
    for err in exc.errors(include_input=False, include_url=False):
        loc = ".".join(str(p) for p in err.get("loc", ())) or "value"
        parts.append(f"{loc}: {err.get('msg', 'invalid')}")
    return "; ".join(parts) or str(exc)


def os_message(exc: OSError) -> str:
    """``cannot use PATH: Permission denied`` for an ``OSError`` with a file name."""
    what = exc.strerror or exc.__class__.__name__
    if exc.filename is not None:
        return f"cannot use {exc.filename}: {what}"
    return what


def emit_error(prog: str, message: str, *, json_mode: bool = False, code: str = "error", exit_code: int = 2) -> None:
    """Print one error: ``prog: error: message`` on stderr, and with ``--json`` a JSON object on stdout."""
    if json_mode:
        try:
            print(json.dumps({"ok": False, "error": code, "message": message, "exit_code": exit_code}), flush=True)
        except BrokenPipeError:  # pragma: no cover
            pass
    print(f"{prog}: error: {message}", file=sys.stderr, flush=True)


def run(
    prog: str,
    func: Callable[[], int],
    *,
    handlers: Iterable[tuple[type[BaseException] | tuple[type[BaseException], ...], Callable[[Any], tuple[int, str]]]],
    json_mode: bool = False,
) -> int:
    """Run a command, turning every exception into one line and an exit code.

    Args:
        prog: Command name for the message prefix.
        func: The command; returns its exit code.
        handlers: ``(exception types, exc -> (exit code, message))`` tried in order before the generic ones.
        json_mode: The command was given ``--json``: errors are also printed as JSON on stdout.
    """
    try:
        return int(func())
    except BrokenPipeError:
        _silence_stdout()
        return EXIT_PIPE
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BaseException as exc:  # noqa: BLE001 - the one place every error becomes a line and a code
        if isinstance(exc, SystemExit):
            raise
        for types, handle in handlers:
            if isinstance(exc, types) and not isinstance(exc, LockHeld):
                code, message = handle(exc)
                emit_error(prog, message, json_mode=json_mode, code=getattr(exc, "code", "error"), exit_code=code)
                return code
        code, message, kind = _generic(exc)
        if code == EXIT_INTERNAL and os.environ.get(DEBUG_ENV):
            traceback.print_exc()
        emit_error(prog, message, json_mode=json_mode, code=kind, exit_code=code)
        return code


def _generic(exc: BaseException) -> tuple[int, str, str]:
    from pydantic import ValidationError

    if isinstance(exc, LockHeld):
        return EXIT_LOCKED, str(exc), "locked"
    if isinstance(exc, ValidationError):
        return EXIT_USAGE, validation_message(exc), "invalid"
    if isinstance(exc, OSError):
        return EXIT_USAGE, os_message(exc), "os_error"
    where = ""
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    if tb is not None:
        where = f" at {os.path.basename(tb.tb_frame.f_code.co_filename)}:{tb.tb_lineno}"
    return (
        EXIT_INTERNAL,
        f"internal error ({exc.__class__.__name__}{where}); please report it. {DEBUG_ENV}=1 shows the traceback",
        "internal",
    )


def _silence_stdout() -> None:
    """After a broken pipe: point stdout at /dev/null so the interpreter's final flush stays quiet."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):  # pragma: no cover
        pass
