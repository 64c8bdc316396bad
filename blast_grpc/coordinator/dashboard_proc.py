"""The web dashboard as a child of ``blast-grpc serve`` (``settings.dashboard``, on ``settings.web_port``).

Like the REST gateway it is stateless (it only calls the coordinator's public gRPC API),
so it is started, watched and stopped the same way; it gets the API keys in its
environment, never on disk.
"""

from __future__ import annotations

from .gateway_proc import GatewayProcess


class DashboardProcess(GatewayProcess):
    module = "blast_grpc_gateway.dashboard"
    what = "the web dashboard"
    port_key = "web_port"
