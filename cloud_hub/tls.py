"""TLS for ``cloud-hub serve``: certificate and key from files, a renewed certificate taken without a restart.

``--tls-cert`` / ``--tls-key`` (or ``$CLOUD_HUB_TLS_CERT`` / ``$CLOUD_HUB_TLS_KEY``) name PEM files. The
server's one :class:`ssl.SSLContext` is built here; :meth:`CertReloader.maybe_reload` loads the files
again into the same context when either changes, so new connections get the renewed certificate and
open ones are not disturbed. A renewal that does not load (half-written, key not matching) is logged
and the old certificate stays in use. TLS 1.2 is the minimum.
"""

from __future__ import annotations

import logging
import os
import ssl
from pathlib import Path

from ._exceptions import InputError

log = logging.getLogger("cloud_hub.tls")
ENV_CERT = "CLOUD_HUB_TLS_CERT"
ENV_KEY = "CLOUD_HUB_TLS_KEY"


def _stamp(path: Path) -> tuple[int, int]:
    st = path.stat()
    return st.st_mtime_ns, st.st_size


class CertReloader:
    """The server's SSL context and the files it came from."""

    def __init__(self, cert: Path, key: Path) -> None:
        self.cert, self.key = cert, key
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.minimum_version = ssl.TLSVersion.TLSv1_2
        try:
            self._stamps = (_stamp(cert), _stamp(key))
            self.context.load_cert_chain(str(cert), str(key))
        except (OSError, ssl.SSLError) as exc:
            raise InputError(f"TLS certificate {cert} / key {key} cannot be loaded: {exc}", field="tls-cert") from None
        self.reloads = 0

    def maybe_reload(self) -> bool:
        """Load the files again when they changed; True when a new certificate is in use."""
        try:
            stamps = (_stamp(self.cert), _stamp(self.key))
        except OSError as exc:
            log.warning("TLS certificate files unreadable (%s); keeping the current certificate", exc)
            return False
        if stamps == self._stamps:
            return False
        try:
            self.context.load_cert_chain(str(self.cert), str(self.key))
        except (OSError, ssl.SSLError) as exc:
            log.warning("renewed TLS certificate does not load (%s); keeping the current one", exc)
            return False
        self._stamps = stamps
        self.reloads += 1
        log.info("TLS certificate reloaded from %s", self.cert)
        return True


def from_args(cert: str | None, key: str | None) -> CertReloader | None:
    """The reloader for ``--tls-cert``/``--tls-key`` (or the environment), or None for plain HTTP.

    Raises:
        InputError: only one of the two given, or the files do not load.
    """
    cert = cert or os.environ.get(ENV_CERT) or None
    key = key or os.environ.get(ENV_KEY) or None
    if not cert and not key:
        return None
    if not cert or not key:
        raise InputError("TLS needs both --tls-cert and --tls-key", field="tls-cert" if not cert else "tls-key")
    return CertReloader(Path(cert).expanduser(), Path(key).expanduser())
