"""One exception tree: every public exception class of the product packages derives from StoreSyncError."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import pytest

import cloud_hub
import edge_agent
import storesync_runtime
import sync_protocol
import tui
from sync_protocol._exceptions import StoreSyncError

PACKAGES = (sync_protocol, storesync_runtime, edge_agent, cloud_hub, tui)


def _exception_classes() -> list[type[BaseException]]:
    found: dict[str, type[BaseException]] = {}
    for pkg in PACKAGES:
        for info in pkgutil.walk_packages(pkg.__path__, pkg.__name__ + "."):
            if info.name.endswith("__main__"):
                continue
            module = importlib.import_module(info.name)
            for name, obj in vars(module).items():
                if (
                    inspect.isclass(obj)
                    and issubclass(obj, BaseException)
                    and obj.__module__ == module.__name__
                    and not name.startswith("_")
                ):
                    found[f"{obj.__module__}.{name}"] = obj
    return [found[k] for k in sorted(found)]


CLASSES = _exception_classes()


def test_the_tree_is_not_empty() -> None:
    names = {c.__name__ for c in CLASSES}
    assert {"ProtocolError", "AgentError", "HubError", "SinkError", "TuiError", "DropRejected"} <= names


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: f"{c.__module__}.{c.__name__}")
def test_every_exception_has_the_one_root(cls: type[BaseException]) -> None:
    assert issubclass(cls, StoreSyncError), f"{cls.__module__}.{cls.__name__} is outside the StoreSyncError tree"


def test_one_hub_error_class() -> None:
    assert [c for c in CLASSES if c.__name__ == "HubError"] == [
        importlib.import_module("cloud_hub._exceptions").HubError
    ]
