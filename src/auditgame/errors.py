"""One error type for bad input, so the CLI can print one line and exit 2."""

from __future__ import annotations


class AuditgameError(Exception):
    """Bad input: names the file and the field at fault; the CLI exits 2 on it."""

    def __init__(self, message: str, *, path: object | None = None, field: str | None = None):
        self.path = None if path is None else str(path)
        self.field = field
        self.message = message
        super().__init__(self.__str__())

    def __str__(self) -> str:
        where = ""
        if self.path:
            where = self.path
            if self.field:
                where += f": {self.field}"
            where += ": "
        elif self.field:
            where = f"{self.field}: "
        return f"{where}{self.message}"
