"""The link between the coordinator and workers on other hosts: token, TLS, channels, ports.

Both directions carry the worker token (``settings.worker_token`` or ``BLAST_WORKER_TOKEN``)
as ``authorization: Bearer <token>`` metadata, checked by ``WorkerTokenInterceptor``
(coordinator/auth.py, the API-key check): the worker calls the coordinator's
``WorkerRegistryService`` and ``TaskBrokerService`` on ``settings.worker_listen``, and the
coordinator calls the worker's ``WorkerService``. TLS is the same on both sides: with
``worker_tls_cert``/``worker_tls_key`` each side serves that certificate, and with
``worker_tls_ca`` each side, as a client, requires the other's certificate to chain to
that CA. Without TLS the token travels in clear text: only on a network you trust.

Local workers (Unix sockets in the coordinator's runtime directory) use none of this.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable

import grpc

from .config import Settings

TOKEN_ENV = "BLAST_WORKER_TOKEN"
# A cut link shows up within seconds instead of when TCP gives up (minutes).
KEEPALIVE = [("grpc.keepalive_time_ms", 5000), ("grpc.keepalive_timeout_ms", 5000),
             ("grpc.keepalive_permit_without_calls", 1), ("grpc.http2.max_pings_without_data", 0)]
SERVER_KEEPALIVE = [("grpc.http2.min_ping_interval_without_data_ms", 4000),
                    ("grpc.keepalive_permit_without_calls", 1)]
MAX_MESSAGE = [("grpc.max_receive_message_length", 8 * 1024 * 1024)]


class LinkError(ValueError):
    """The remote-worker link is misconfigured; the message names the setting."""


def worker_token(settings: Settings, token_file: str | None = None,
                 environ: Any = os.environ) -> str:
    """The token: ``token_file`` (a worker's ``--token-file``), else BLAST_WORKER_TOKEN, else the setting."""
    if token_file:
        try:
            token = Path(token_file).read_text().strip()
        except OSError as exc:
            raise LinkError(f"cannot read the worker token file {token_file}: {exc.strerror}") from exc
        if not token:
            raise LinkError(f"the worker token file {token_file} is empty")
        return token
    return (environ.get(TOKEN_ENV, "").strip() or (settings.worker_token or "").strip())


def _read(path: str, key: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise LinkError(f"settings.{key}: cannot read {path}: {exc.strerror}") from exc


def uses_tls(settings: Settings) -> bool:
    return settings.worker_tls_ca is not None or settings.worker_tls_cert is not None


def server_credentials(settings: Settings) -> grpc.ServerCredentials | None:
    """TLS for a worker-facing port (the coordinator's worker_listen, a remote worker's own), or None."""
    if settings.worker_tls_cert is None or settings.worker_tls_key is None:
        if settings.worker_tls_ca is not None:
            raise LinkError("settings.worker_tls_ca is set but worker_tls_cert/worker_tls_key are not: "
                            "a TLS link needs the certificate this side serves")
        return None
    pair = (_read(settings.worker_tls_key, "worker_tls_key"), _read(settings.worker_tls_cert, "worker_tls_cert"))
    return grpc.ssl_server_credentials([pair])


def add_port(server: grpc.aio.Server, address: str, settings: Settings) -> int:
    """Listen on ``address`` (TLS when configured); the port bound, 0 when it could not."""
    creds = server_credentials(settings)
    return server.add_secure_port(address, creds) if creds is not None else server.add_insecure_port(address)


class _Token:
    """Adds ``authorization: Bearer <token>`` to every call (works on plain channels too,
    unlike call credentials)."""

    def __init__(self, token: str) -> None:
        self._md = ("authorization", f"Bearer {token}")

    def _with(self, details: grpc.aio.ClientCallDetails) -> grpc.aio.ClientCallDetails:
        md = grpc.aio.Metadata(*(details.metadata or ()))
        md.add(*self._md)
        return grpc.aio.ClientCallDetails(details.method, details.timeout, md, details.credentials,
                                          details.wait_for_ready)


# grpc.aio files an interceptor under the first kind it is (one class per kind of call).
class _UnaryToken(_Token, grpc.aio.UnaryUnaryClientInterceptor):  # type: ignore[misc]
    async def intercept_unary_unary(self, continuation: Callable[..., Any], details: grpc.aio.ClientCallDetails,
                                    request: Any) -> Any:
        return await continuation(self._with(details), request)


class _StreamToken(_Token, grpc.aio.UnaryStreamClientInterceptor):  # type: ignore[misc]
    async def intercept_unary_stream(self, continuation: Callable[..., Any], details: grpc.aio.ClientCallDetails,
                                     request: Any) -> Any:
        return await continuation(self._with(details), request)


def channel(address: str, settings: Settings, token: str) -> grpc.aio.Channel:
    """A channel to the other side of the link (a remote worker, or the coordinator's worker port)."""
    options = KEEPALIVE + MAX_MESSAGE
    interceptors: list[Any] = [_UnaryToken(token), _StreamToken(token)] if token else []
    if not uses_tls(settings):
        return grpc.aio.insecure_channel(address, options=options, interceptors=interceptors)
    ca = _read(settings.worker_tls_ca, "worker_tls_ca") if settings.worker_tls_ca else None
    creds = grpc.ssl_channel_credentials(root_certificates=ca)
    return grpc.aio.secure_channel(address, creds, options=options, interceptors=interceptors)
