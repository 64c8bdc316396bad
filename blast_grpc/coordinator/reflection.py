"""gRPC server reflection under both protocol names: ``grpc.reflection.v1`` and ``v1alpha``.

grpcio-reflection (1.85) only ships ``grpc.reflection.v1alpha``, but newer clients
(``buf curl --reflect-protocol grpc-v1``, grpcurl's newer releases) speak only
``grpc.reflection.v1``. The two protocols are the same ``.proto`` under two package
names: identical messages with identical field numbers, so the bytes on the wire are the
same. We therefore serve v1 with v1alpha's servicer and message classes, registered under
v1's method path, and add a v1 copy of the reflection file to the descriptor pool so that
a client reflecting on ``grpc.reflection.v1.ServerReflection`` itself gets an answer.
"""

from __future__ import annotations

from typing import Iterable

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool
from grpc_reflection.v1alpha import reflection_pb2 as alpha
from grpc_reflection.v1alpha import reflection_pb2_grpc as alpha_grpc
from grpc_reflection.v1alpha._async import ReflectionServicer

ALPHA_PACKAGE = "grpc.reflection.v1alpha"
V1_PACKAGE = "grpc.reflection.v1"
ALPHA_SERVICE = f"{ALPHA_PACKAGE}.ServerReflection"
V1_SERVICE = f"{V1_PACKAGE}.ServerReflection"
V1_FILE = "grpc/reflection/v1/reflection.proto"


def _v1_file() -> descriptor_pb2.FileDescriptorProto:
    """v1alpha's reflection.proto renamed to v1 (package, file name, type references)."""
    fdp = descriptor_pb2.FileDescriptorProto()
    alpha.DESCRIPTOR.CopyToProto(fdp)
    fdp.name, fdp.package = V1_FILE, V1_PACKAGE
    old, new = f".{ALPHA_PACKAGE}.", f".{V1_PACKAGE}."
    for msg in fdp.message_type:
        for f in msg.field:
            if f.type_name:  # assigning "" would mark a scalar field as having a type name
                f.type_name = f.type_name.replace(old, new)
    for svc in fdp.service:
        for m in svc.method:
            m.input_type, m.output_type = m.input_type.replace(old, new), m.output_type.replace(old, new)
    return fdp


def _ensure_v1_descriptor() -> None:
    pool = descriptor_pool.Default()
    try:
        pool.FindFileByName(V1_FILE)  # already there (a later grpcio-reflection, or a second server)
    except KeyError:
        pool.AddSerializedFile(_v1_file().SerializeToString())


def enable_reflection(service_names: Iterable[str], server: grpc.aio.Server) -> None:
    """Serve reflection for ``service_names`` (plus both reflection services) on ``server``."""
    _ensure_v1_descriptor()
    servicer = ReflectionServicer(tuple(service_names) + (V1_SERVICE, ALPHA_SERVICE))
    alpha_grpc.add_ServerReflectionServicer_to_server(servicer, server)
    v1 = grpc.stream_stream_rpc_method_handler(
        servicer.ServerReflectionInfo,
        request_deserializer=alpha.ServerReflectionRequest.FromString,  # same wire format as v1's
        response_serializer=alpha.ServerReflectionResponse.SerializeToString,
    )
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(V1_SERVICE, {"ServerReflectionInfo": v1}),))
