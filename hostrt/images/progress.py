"""How transfers report progress, without knowing who draws it (a rich bar, or nothing)."""

from __future__ import annotations

from typing import Protocol


class Progress(Protocol):
    def start(self, key: str, description: str, total: int | None) -> None: ...

    def advance(self, key: str, amount: int) -> None: ...

    def finish(self, key: str, note: str) -> None: ...


class Silent:
    """Reports nothing (not a terminal, or a library caller)."""

    def start(self, key: str, description: str, total: int | None) -> None:
        pass

    def advance(self, key: str, amount: int) -> None:
        pass

    def finish(self, key: str, note: str) -> None:
        pass


SILENT = Silent()
