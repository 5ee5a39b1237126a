"""Schema drift, as data: the difference between two column schemas (warehouse or Pendo) in words."""

from __future__ import annotations

from dataclasses import dataclass, field

from pendo_sync.config import SyncSpec

# Database types a Pendo type can take without loss; "string" and "" take anything.
_ACCEPTS = {
    "integer": ("int", "integer", "bigint", "smallint", "numeric", "decimal", "hugeint", "tinyint"),
    "float": (
        "int",
        "integer",
        "bigint",
        "smallint",
        "numeric",
        "decimal",
        "double",
        "real",
        "float",
        "hugeint",
    ),
    "boolean": ("bool", "boolean"),
    "time": ("timestamp", "date", "time"),
    "list": ("array", "[]", "json", "super", "list", "char", "text"),
}


@dataclass
class SchemaDiff:
    added: dict[str, str] = field(default_factory=dict)
    removed: dict[str, str] = field(default_factory=dict)
    changed: dict[str, tuple[str, str]] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.added or self.removed or self.changed)

    def lines(self) -> list[str]:
        return (
            [f"added column {n} ({t})" for n, t in self.added.items()]
            + [f"removed column {n} ({t})" for n, t in self.removed.items()]
            + [f"column {n} changed type: {old} -> {new}" for n, (old, new) in self.changed.items()]
        )


def schema_diff(old: dict[str, str], new: dict[str, str]) -> SchemaDiff:
    return SchemaDiff(
        added={n: t for n, t in new.items() if n not in old},
        removed={n: t for n, t in old.items() if n not in new},
        changed={n: (old[n], t) for n, t in new.items() if n in old and old[n] != t},
    )


def column_type_problems(spec: SyncSpec, columns: dict[str, str]) -> list[str]:
    """Mapped columns that are gone, or whose database type no longer fits the Pendo type."""
    problems = []
    for mapping in spec.fields:
        db_type = columns.get(mapping.column)
        if db_type is None:
            problems.append(
                f"sync {spec.name!r}: mapped column {mapping.column!r} is no longer in {spec.source_label}"
            )
            continue
        accepted = _ACCEPTS.get(mapping.type)
        if accepted and db_type and not any(word in db_type.lower() for word in accepted):
            problems.append(
                f"sync {spec.name!r}: column {mapping.column!r} is now {db_type}, which does not fit Pendo type "
                f"{mapping.type!r} of field {mapping.field!r}; change the mapping or the column"
            )
    return problems
