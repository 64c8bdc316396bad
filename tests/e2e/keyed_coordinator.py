"""A stand-in coordinator that requires an API key, for the gateway's tests.

``python -m tests.e2e.keyed_coordinator --key KEY --ready-file PATH`` serves
``blast.v1.BlastService`` on 127.0.0.1 (a free port) behind the coordinator's own
``ApiKeyInterceptor``: ``GetMetrics`` reports one ready worker and ``GetTask`` knows no task;
``grpc.health.v1`` says SERVING (open without a key, as on the real one: the gateway's ``/readyz``).
Starting a real engine with keys would also start browser workers; the gateway only needs
a coordinator that checks keys the way the real one does. Once listening it writes
``{"address": "127.0.0.1:PORT"}`` to the ready file.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
from pathlib import Path

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from blast_grpc._proto.blast.v1 import blast_pb2 as pb
from blast_grpc._proto.blast.v1 import blast_pb2_grpc as bgrpc
from blast_grpc.coordinator.auth import ApiKeyInterceptor


class KeyedCoordinator(bgrpc.BlastServiceServicer):
    async def GetMetrics(self, request: pb.GetMetricsRequest,  # noqa: N802 (gRPC method name)
                         context: grpc.aio.ServicerContext) -> pb.GetMetricsResponse:
        return pb.GetMetricsResponse(workers=[pb.WorkerInfo(worker_id="w0", state=pb.WORKER_STATE_READY)])

    async def GetTask(self, request: pb.GetTaskRequest,  # noqa: N802
                      context: grpc.aio.ServicerContext) -> pb.GetTaskResponse:
        await context.abort(grpc.StatusCode.NOT_FOUND, f"no task with id {request.task_id[:100]!r}")
        raise AssertionError("unreachable")


async def serve(key: str, ready_file: Path) -> None:
    server = grpc.aio.server(interceptors=[ApiKeyInterceptor([key])])
    bgrpc.add_BlastServiceServicer_to_server(KeyedCoordinator(), server)
    checks = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(checks, server)
    await checks.set("blast.v1.BlastService", health_pb2.HealthCheckResponse.SERVING)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    tmp = ready_file.with_suffix(".tmp")
    tmp.write_text(json.dumps({"address": f"127.0.0.1:{port}"}))
    os.replace(tmp, ready_file)
    await server.wait_for_termination()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--key", required=True)
    ap.add_argument("--ready-file", required=True, type=Path)
    args = ap.parse_args()
    asyncio.run(serve(args.key, args.ready_file))


if __name__ == "__main__":
    main()
