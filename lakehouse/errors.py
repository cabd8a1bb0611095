"""One error family. Every error says what was wrong, where, and what a rerun will do."""

from __future__ import annotations


class LakehouseError(Exception):
    """Base of every error the engine raises on purpose (a user or input error, not a bug)."""


class ConfigError(LakehouseError):
    """The configuration is invalid: names the file, the key path and what was expected."""

    def __init__(self, message: str, *, file: str | None = None, key: str | None = None) -> None:
        where = ", ".join(p for p in (f"file {file}" if file else "", f"key {key}" if key else "") if p)
        super().__init__(f"{message} ({where})" if where else message)
        self.file = file
        self.key = key


class InputError(LakehouseError):
    """The input cannot be applied as it is. Nothing of the batch was committed; fix the input and rerun."""

    def __init__(self, message: str, *, table: str | None = None, batch_id: int | None = None) -> None:
        where = ", ".join(
            p for p in (f"table {table}" if table else "", f"batch {batch_id}" if batch_id is not None else "") if p
        )
        super().__init__(f"{message} [{where}]" if where else message)
        self.table = table
        self.batch_id = batch_id


class RetryableError(LakehouseError):
    """A transient failure (storage, network). The batch was not committed; a rerun resumes from the checkpoint."""


class TableNotFoundError(LakehouseError):
    """A table the command needs has not been written yet."""


class SnapshotError(InputError):
    """A snapshot file cannot be read whole (bad ZIP, invalid or truncated JSON, an entity without its key).

    A snapshot is parsed completely before anything is applied, so when this is raised nothing of the
    snapshot was applied: fix or replace the file and rerun. `position` is the byte offset in the JSON
    (decompressed) where the parser was; `entity_index` is 0-based in `coveredEntities`.
    """

    def __init__(
        self, message: str, *, file: str, entity_index: int | None = None, position: int | None = None
    ) -> None:
        where = [f"file {file}"]
        if entity_index is not None:
            where.append(f"entity #{entity_index}")
        if position is not None:
            where.append(f"byte {position}")
        super().__init__(
            f"{message} ({', '.join(where)}). Nothing of this snapshot was applied; fix or replace the file and rerun."
        )
        self.problem = message
        self.file = file
        self.entity_index = entity_index
        self.position = position

    def __reduce__(self) -> tuple:  # picklable (a worker process sends it back): rebuilt from its parts
        return _snapshot_error, (self.problem, self.file, self.entity_index, self.position)


def _snapshot_error(problem: str, file: str, entity_index: int | None, position: int | None) -> SnapshotError:
    return SnapshotError(problem, file=file, entity_index=entity_index, position=position)
