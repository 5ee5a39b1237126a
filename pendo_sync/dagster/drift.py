"""Schema drift, as data: the difference between two column schemas (warehouse or Pendo) in words."""

from __future__ import annotations

from dataclasses import dataclass, field


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
