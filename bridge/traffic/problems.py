"""What is wrong with a config entry, named so an operator can find it: kind, name and field."""

from __future__ import annotations

from dataclasses import dataclass

EntryKey = tuple[str, str]  # (kind, name), e.g. ("service-resolver", "web")


@dataclass(frozen=True, slots=True, order=True)
class EntryProblem:
    """One problem with one field of one config entry (or one thing gRPC cannot do with it).

    ``field`` is the path inside the entry as Consul spells it (``Splits[1].Weight``,
    ``Routes[0].Match.HTTP.PathRegex``); empty when the entry as a whole is meant.
    """

    kind: str
    name: str
    field: str
    message: str

    @property
    def key(self) -> EntryKey:
        return (self.kind, self.name)

    def __str__(self) -> str:
        where = f" field {self.field}" if self.field else ""
        return f"{self.kind} {self.name!r}{where}: {self.message}"
