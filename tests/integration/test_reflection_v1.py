"""Server reflection under ``grpc.reflection.v1`` (clients that speak only v1) as well as v1alpha.

Two v1-only clients: a raw stub on v1's method path (the v1 and v1alpha messages are the
same bytes on the wire, so v1alpha's classes encode them) and ``buf curl
--reflect-protocol grpc-v1``, which ``make test`` installs (``make lint-proto``).
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import grpc
from google.protobuf import descriptor_pb2
from grpc_reflection.v1alpha import reflection_pb2 as rpb

from blast_grpc import Engine

from ..conftest import ROOT

V1_METHOD = "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo"
BUF = ROOT / ".cache" / "buf" / "node_modules" / ".bin" / "buf"


def _ask(channel: grpc.Channel, *requests: rpb.ServerReflectionRequest) -> list[rpb.ServerReflectionResponse]:
    call = channel.stream_stream(V1_METHOD, request_serializer=rpb.ServerReflectionRequest.SerializeToString,
                                 response_deserializer=rpb.ServerReflectionResponse.FromString)
    return list(call(iter(requests), timeout=10))


def _files(resp: rpb.ServerReflectionResponse) -> list[descriptor_pb2.FileDescriptorProto]:
    assert resp.WhichOneof("message_response") == "file_descriptor_response", resp
    return [descriptor_pb2.FileDescriptorProto.FromString(b) for b in resp.file_descriptor_response.file_descriptor_proto]


def test_a_v1_stub_lists_services_and_gets_their_files(engine: Engine) -> None:
    with grpc.insecure_channel(engine.address) as channel:
        listed, blast, v1, missing = _ask(
            channel,
            rpb.ServerReflectionRequest(list_services=""),
            rpb.ServerReflectionRequest(file_containing_symbol="blast.v1.BlastService"),
            rpb.ServerReflectionRequest(file_containing_symbol="grpc.reflection.v1.ServerReflection"),
            rpb.ServerReflectionRequest(file_containing_symbol="no.such.Service"),
        )
    names = {s.name for s in listed.list_services_response.service}
    assert {"blast.v1.BlastService", "grpc.health.v1.Health", "grpc.reflection.v1.ServerReflection",
            "grpc.reflection.v1alpha.ServerReflection"} <= names
    (blast_file,) = [f for f in _files(blast) if f.package == "blast.v1"]
    (svc,) = [s for s in blast_file.service if s.name == "BlastService"]
    assert {"RunTask", "GetMetrics"} <= {m.name for m in svc.method}
    (v1_file,) = _files(v1)
    assert v1_file.package == "grpc.reflection.v1"
    assert v1_file.service[0].method[0].input_type == ".grpc.reflection.v1.ServerReflectionRequest"
    assert missing.WhichOneof("message_response") == "error_response"
    assert missing.error_response.error_code == grpc.StatusCode.NOT_FOUND.value[0]


def test_buf_curl_with_the_v1_reflection_protocol_calls_the_service(engine: Engine) -> None:
    assert Path(BUF).exists(), f"{BUF} is missing: `make lint-proto` installs buf"
    out = subprocess.run([str(BUF), "curl", "--protocol", "grpc", "--reflect-protocol", "grpc-v1",
                          f"http://{engine.address}/blast.v1.BlastService/GetMetrics"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    reply = json.loads(out.stdout)
    assert len(reply["workers"]) == 2
