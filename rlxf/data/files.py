"""Raw input files in, output files out: UTF-8 and CSV shape checked where a file enters, atomic writes.

Every problem with an input is a `DataError` whose message names the file (and the line or row where there is
one) and says what was expected; the command line prints it without a traceback.
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pandas as pd


class DataError(ValueError):
    """An input file, row or parameter that is not what hydration expects; the message says where and what."""


def check_utf8(raw: bytes, path: str | Path, expected: str) -> str:
    """raw decoded as UTF-8; other bytes (e.g. Latin-1 or Windows-1252) are an error naming the file and line."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as error:
        line = raw.count(b"\n", 0, error.start) + 1
        column = error.start - (raw.rfind(b"\n", 0, error.start) + 1) + 1
        raise DataError(
            f"{path}: line {line}, byte {column}: byte 0x{raw[error.start]:02x} is not UTF-8 ({error.reason}); "
            f"expected {expected} encoded as UTF-8 (a Latin-1/Windows-1252 file must be re-saved as UTF-8)"
        ) from None


def check_csv_rows(text: str, path: str | Path) -> None:
    """Every record of a CSV text has as many fields as its header; else an error naming the line."""
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader, None)
        if header is None:
            return
        for record in reader:
            if record and len(record) != len(header):
                raise DataError(
                    f"{path}: line {reader.line_num} has {len(record)} fields; expected {len(header)} like the "
                    f"header ({','.join(name.lstrip(chr(0xFEFF)) for name in header)}): a missing or extra comma, "
                    "or a text field with a comma that is not quoted"
                )
    except csv.Error as error:
        raise DataError(f"{path}: line {reader.line_num}: not valid CSV ({error})") from None


def read_text_csv(path: str | Path, expected: str) -> pd.DataFrame:
    """A UTF-8 CSV with every column read as text (`dtype=str, keep_default_na=False`), its shape checked first.

    `expected` says what the file should be (e.g. "a CSV with columns handle,party,text") for the error messages.
    """
    path = Path(path)
    check_csv_rows(check_utf8(path.read_bytes(), path, expected), path)
    try:
        return pd.read_csv(path, dtype=str, keep_default_na=False)
    except pd.errors.EmptyDataError:
        raise DataError(f"{path}: the file is empty (expected {expected})") from None
    except pd.errors.ParserError as error:
        raise DataError(f"{path}: not a readable CSV ({error}); expected {expected}") from None


def read_parquet_file(path: str | Path, expected: str) -> pd.DataFrame:
    """A parquet file; one that cannot be read is an error naming it."""
    try:
        return pd.read_parquet(path)
    except (OSError, ValueError) as error:  # pyarrow's ArrowInvalid is a ValueError
        raise DataError(f"{path}: not a readable parquet file ({error}); expected {expected}") from None


@contextmanager
def atomic_file(final: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside `final` that replaces `final` (one rename) only if the block finishes.

    A reader, or a later run, sees either the old file or the whole new one, never half of one.
    """
    final = Path(final)
    tmp = final.with_name(f".{final.name}.tmp-{os.getpid()}")
    try:
        yield tmp
        os.replace(tmp, final)
    finally:
        tmp.unlink(missing_ok=True)
