"""Certificates renewed without a restart: the xDS listener's and the Consul client's.

* :class:`ServerCertificates` serves the xDS listener through gRPC's dynamic SSL credentials:
  gRPC asks it, before every new connection's handshake, whether the certificate changed.
  :meth:`ServerCertificates.reload` (on a file event or SIGHUP) reads the certificate, key and
  client CA, checks them as start-up does, and only then offers them -- all three at once, so a
  handshake never sees a new certificate with an old key. Open streams keep the session they
  negotiated; files that cannot be used are reported and the current certificate stays.
* :class:`ConsulTls` holds the Consul client's ``ssl.SSLContext`` and rebuilds it when the CA,
  client certificate or key change; requests pass the current one, so new connections use it
  (idle keep-alive connections made with the old one are not reused).
"""

from __future__ import annotations

import datetime
import logging
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import grpc

from .certinfo import not_after
from .config import ConfigError
from .consul.client import build_ssl_context
from .consul_settings import ConsulSettings
from .security import XdsTls, check_xds_tls

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ServerTlsFiles:
    """The contents of the xDS listener's TLS files, checked to belong together."""

    key: bytes = field(repr=False)
    cert: bytes
    client_ca: bytes | None
    not_after: float  # the leaf certificate's, Unix time

    def configuration(self) -> grpc.ServerCertificateConfiguration:
        return grpc.ssl_server_certificate_configuration([(self.key, self.cert)], self.client_ca)


def _contents(tls: XdsTls) -> tuple[bytes, bytes, bytes | None]:
    def read(path: str, key: str) -> bytes:
        try:
            return Path(path).read_bytes()
        except OSError as exc:
            raise ConfigError(key, f"cannot read {path!r}: {exc.strerror or exc}") from None

    ca = read(tls.client_ca_file, "xds.tls_client_ca") if tls.client_ca_file else None
    return read(tls.key_file, "xds.tls_key"), read(tls.cert_file, "xds.tls_cert"), ca


def read_server_tls(tls: XdsTls) -> ServerTlsFiles:
    """Read and check the files; :class:`ConfigError` names the key when they are unusable,
    or when they changed while being read (a renewal half written: the next event retries)."""
    before = _contents(tls)
    check_xds_tls(tls)
    after = _contents(tls)
    if before != after:
        raise ConfigError("xds.tls_cert", "the files changed while being read")
    key, cert, ca = after
    try:
        expiry = not_after(cert)
    except ValueError as exc:
        raise ConfigError("xds.tls_cert", f"cannot read the certificate's expiry: {exc}") from None
    return ServerTlsFiles(key, cert, ca, expiry)


def _when(timestamp: float) -> str:
    return datetime.datetime.fromtimestamp(timestamp, datetime.UTC).isoformat(timespec="seconds")


class ServerCertificates:
    """The xDS listener's TLS material, replaceable while serving."""

    def __init__(
        self,
        tls: XdsTls,
        *,
        on_served: Callable[[ServerTlsFiles], None] | None = None,
        on_handshake: Callable[[], None] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """``on_served(files)``: the certificate new connections get from now on (called at
        once and after every reload); ``on_handshake()``: a connection is about to negotiate
        TLS (called from a gRPC thread). Raises :class:`ConfigError` when the files are
        unusable."""
        self.tls = tls
        self.on_served = on_served
        self.on_handshake = on_handshake
        self.clock = clock
        self.current = read_server_tls(tls)
        self._pending: grpc.ServerCertificateConfiguration | None = None
        self._lock = threading.Lock()
        self._served(self.current)

    def credentials(self) -> grpc.ServerCredentials:
        return grpc.dynamic_ssl_server_credentials(
            self.current.configuration(),
            self._fetch,  # type: ignore[arg-type]  # None means "no change" (gRPC's docs)
            require_client_authentication=self.current.client_ca is not None,
        )

    def _fetch(self) -> grpc.ServerCertificateConfiguration | None:
        """gRPC's question before each handshake: a new configuration, or None for no change."""
        if self.on_handshake is not None:
            self.on_handshake()
        with self._lock:
            pending, self._pending = self._pending, None
        return pending

    def reload(self) -> bool:
        """Re-read the files; returns whether new connections now get different material."""
        try:
            files = read_server_tls(self.tls)
        except ConfigError as exc:
            log.warning(
                "xDS TLS files not reloaded, still serving the certificate expiring %s: %s",
                _when(self.current.not_after),
                exc,
            )
            return False
        if files == self.current:
            return False
        configuration = files.configuration()
        with self._lock:
            self.current = files
            self._pending = configuration
        log.info(
            "xDS TLS reloaded: new connections get the certificate expiring %s "
            "(open streams keep theirs)",
            _when(files.not_after),
        )
        self._served(files)
        return True

    def _served(self, files: ServerTlsFiles) -> None:
        if files.not_after <= self.clock():
            log.warning(
                "the xDS listener's certificate %s expired %s: clients will refuse it",
                self.tls.cert_file,
                _when(files.not_after),
            )
        if self.on_served is not None:
            self.on_served(files)

    @property
    def files(self) -> list[str]:
        return [f for f in (self.tls.cert_file, self.tls.key_file, self.tls.client_ca_file) if f]


class ConsulTls:
    """The Consul client's TLS context, rebuilt when its files change (call :meth:`context`
    for the current one)."""

    def __init__(self, settings: ConsulSettings) -> None:
        self.settings = settings
        self._context = build_ssl_context(settings)
        self._contents = self._read()

    @property
    def files(self) -> list[str]:
        s = self.settings
        if s.scheme != "https":
            return []
        return [f for f in (s.ca_file, s.client_cert, s.client_key) if f]

    def context(self) -> ssl.SSLContext | None:
        return self._context

    def _read(self) -> tuple[bytes, ...]:
        contents = []
        for path in self.files:
            try:
                contents.append(Path(path).read_bytes())
            except OSError:
                contents.append(b"")
        return tuple(contents)

    def reload(self) -> bool:
        """Rebuild the context when the files' contents changed; returns whether it did."""
        contents = self._read()
        if contents == self._contents:
            return False
        try:
            context = build_ssl_context(self.settings)
        except ValueError as exc:
            log.warning("Consul TLS files not reloaded, keeping the current ones: %s", exc)
            return False
        self._context, self._contents = context, contents
        log.info("Consul TLS reloaded: new connections to Consul use the renewed files")
        return True
