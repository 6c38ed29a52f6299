"""Data hydration: political tweets, Plato's dialogues, IMF MONA conditions, IMDB reviews, HH-RLHF pairs.

`hydrate(data_dir, out_dir)` reads the raw files once and writes parquet tables plus `manifest.json`;
`read_table(out_dir, name)` reads a table back; `write_fixtures(out_dir)` writes small stand-in corpora.
A bad or missing input is a `DataError` (or FileNotFoundError) whose message names the file and row.
"""

from rlxf.data.files import DataError
from rlxf.data.fixtures import write_fixtures
from rlxf.data.hydrate import ALL, SOURCES, TABLES, hydrate, load_manifest, read_table

__all__ = ["ALL", "DataError", "SOURCES", "TABLES", "hydrate", "load_manifest", "read_table", "write_fixtures"]
