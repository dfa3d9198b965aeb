"""Message types made at test time, each field carrying the protoc-gen-validate rules a test
needs, so every rule of the validation gate can be checked on its own (Envoy's protos use most
of them, but rarely one alone)."""

from __future__ import annotations

import itertools
from dataclasses import dataclass

from google.protobuf import (
    any_pb2,
    descriptor_pb2,
    descriptor_pool,
    duration_pb2,
    message_factory,
    timestamp_pb2,
    wrappers_pb2,
)
from google.protobuf.message import Message
from validate import validate_pb2

FDP = descriptor_pb2.FieldDescriptorProto
SCALARS = {
    "string": FDP.TYPE_STRING,
    "bytes": FDP.TYPE_BYTES,
    "bool": FDP.TYPE_BOOL,
    "int32": FDP.TYPE_INT32,
    "int64": FDP.TYPE_INT64,
    "uint32": FDP.TYPE_UINT32,
    "uint64": FDP.TYPE_UINT64,
    "double": FDP.TYPE_DOUBLE,
    "float": FDP.TYPE_FLOAT,
}
WELL_KNOWN = {
    "Duration": ".google.protobuf.Duration",
    "Timestamp": ".google.protobuf.Timestamp",
    "Any": ".google.protobuf.Any",
    "UInt32Value": ".google.protobuf.UInt32Value",
    "StringValue": ".google.protobuf.StringValue",
}

_POOL = descriptor_pool.DescriptorPool()
for _module in (descriptor_pb2, duration_pb2, timestamp_pb2, any_pb2, wrappers_pb2, validate_pb2):
    _POOL.Add(descriptor_pb2.FileDescriptorProto.FromString(_module.DESCRIPTOR.serialized_pb))
_NAMES = itertools.count()


@dataclass(frozen=True)
class F:
    """A field: ``kind`` is a scalar type, a well-known message (``Duration``, ...), ``enum``,
    ``self`` (the message itself), ``map<K,V>`` (V may be ``self``), or the name of an earlier
    type made by :func:`message_type`."""

    name: str
    kind: str
    rules: validate_pb2.FieldRules | None = None
    repeated: bool = False
    oneof: str | None = None


def _set_type(field: descriptor_pb2.FieldDescriptorProto, kind: str, own: str) -> None:
    if kind in SCALARS:
        field.type = SCALARS[kind]
    elif kind == "enum":
        field.type = FDP.TYPE_ENUM
        field.type_name = f"{own}.Color"
    else:
        field.type = FDP.TYPE_MESSAGE
        field.type_name = WELL_KNOWN.get(kind) or (own if kind == "self" else kind)


def message_type(
    *fields: F,
    disabled: bool = False,
    ignored: bool = False,
    required_oneofs: tuple[str, ...] = (),
) -> type[Message]:
    """A new message type (named ``pgv.M<n>``) with ``fields``; it also defines an enum
    ``Color`` (RED = 0, GREEN = 1, BLUE = 2) for ``enum`` fields."""
    name = f"M{next(_NAMES)}"
    own = f".pgv.{name}"
    file = descriptor_pb2.FileDescriptorProto(
        name=f"pgv/{name}.proto",
        package="pgv",
        syntax="proto3",
        dependency=[
            "validate/validate.proto",
            "google/protobuf/duration.proto",
            "google/protobuf/timestamp.proto",
            "google/protobuf/any.proto",
            "google/protobuf/wrappers.proto",
        ],
    )
    msg = file.message_type.add(name=name)
    if disabled:
        msg.options.Extensions[validate_pb2.disabled] = True
    if ignored:
        msg.options.Extensions[validate_pb2.ignored] = True
    color = msg.enum_type.add(name="Color")
    for number, value in enumerate(("RED", "GREEN", "BLUE")):
        color.value.add(name=value, number=number)
    oneof_index: dict[str, int] = {}
    for number, spec in enumerate(fields, start=1):
        field = msg.field.add(name=spec.name, number=number, label=FDP.LABEL_OPTIONAL)
        if spec.kind.startswith("map<"):
            key, value = spec.kind[4:-1].split(",")
            entry = msg.nested_type.add(name=spec.name.title().replace("_", "") + "Entry")
            entry.options.map_entry = True
            _set_type(entry.field.add(name="key", number=1, label=FDP.LABEL_OPTIONAL), key, own)
            _set_type(entry.field.add(name="value", number=2, label=FDP.LABEL_OPTIONAL), value, own)
            field.label = FDP.LABEL_REPEATED
            field.type = FDP.TYPE_MESSAGE
            field.type_name = f"{own}.{entry.name}"
        else:
            _set_type(field, spec.kind, own)
            if spec.repeated:
                field.label = FDP.LABEL_REPEATED
        if spec.oneof is not None:
            if spec.oneof not in oneof_index:
                oneof_index[spec.oneof] = len(msg.oneof_decl)
                decl = msg.oneof_decl.add(name=spec.oneof)
                if spec.oneof in required_oneofs:
                    decl.options.Extensions[validate_pb2.required] = True
            field.oneof_index = oneof_index[spec.oneof]
        if spec.rules is not None:
            field.options.Extensions[validate_pb2.rules].CopyFrom(spec.rules)
    _POOL.Add(file)
    return message_factory.GetMessageClass(_POOL.FindMessageTypeByName(f"pgv.{name}"))
