"""The small type language the config entry kinds are declared in (Go types by name)."""

from __future__ import annotations

from dataclasses import dataclass

# Scalar field types, named like the Go types they stand for.
STR = "string"
INT = "int"
UINT32 = "uint32"
UINT64 = "uint64"
FLOAT32 = "float32"
BOOL = "bool"
DURATION = "time.Duration"  # encoded as a Go duration string (custom MarshalJSON)
DURATION_NS = "time.Duration(ns)"  # encoded as integer nanoseconds (no custom marshaller)
STR_MAP = "map[string]string"
ANY_MAP = "map[string]interface {}"
STR_LIST = "[]string"
UINT32_LIST = "[]uint32"
OPAQUE = "interface {}"


@dataclass(frozen=True)
class Struct:
    fields: tuple[Field, ...]


@dataclass(frozen=True)
class ListOf:
    item: Struct


@dataclass(frozen=True)
class MapOf:
    item: Struct


FieldType = str | Struct | ListOf | MapOf


@dataclass(frozen=True)
class Field:
    name: str
    type: FieldType
    omitempty: bool = True
    pointer: bool = False  # a Go pointer: present (even when zero) once set, else omitted


def field(name: str, type_: FieldType, *, omit: bool = True, ptr: bool = False) -> Field:
    return Field(name, type_, omit, ptr)


def struct(*fields: Field) -> Struct:
    return Struct(tuple(fields))


def pointer(name: str, struct_: Struct) -> Field:
    return Field(name, struct_, True, True)
