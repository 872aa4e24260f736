"""StoreSync cloud hub: verifies bursts from the stores, keeps the ledger and forwards events."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("storesync")
except PackageNotFoundError:  # pragma: no cover - running from a source tree without install
    __version__ = "0.0.0+unknown"
