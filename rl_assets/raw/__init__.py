"""The raw loaders: ``data/raw/<source>/*`` -> DuckDB schema ``raw`` (plain Python, no Dagster).

One module per concern: ``common`` (schemas, rejection reasons, limits), ``reading`` (which files a
source reads, content hash, per-record decoding), one loader per source (``sec10k``, ``finqa``,
``tatqa``) and ``loading`` (writing a source into DuckDB). Every malformed record goes to
``raw.rejected_records`` with its file, key and reason (``REJECT_REASONS``); nothing is dropped silently.
"""

from rl_assets.raw.common import (
    MAX_CELL_CHARS, MAX_QUESTION_CHARS, MAX_REJECTED_SHARE, MAX_TEXT_CHARS, REJECT_REASONS, REJECTED_COLUMNS,
    SOURCE_DIRS, SOURCES, TABLE_SCHEMAS, LoadResult,
)
from rl_assets.raw.loading import load_source
from rl_assets.raw.reading import (
    content_hash, hash_contents, ignored_files, input_files, rel_path, sec10k_description_files, source_files,
    unclaimed_folders,
)

__all__ = [
    "MAX_CELL_CHARS", "MAX_QUESTION_CHARS", "MAX_REJECTED_SHARE", "MAX_TEXT_CHARS", "REJECT_REASONS",
    "REJECTED_COLUMNS", "SOURCE_DIRS", "SOURCES", "TABLE_SCHEMAS", "LoadResult", "content_hash", "hash_contents",
    "ignored_files", "input_files", "load_source", "rel_path", "sec10k_description_files", "source_files",
    "unclaimed_folders",
]
