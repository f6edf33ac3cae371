"""Reads every gaze table with pandas, polars and DuckDB, and checks row
counts and column types against the expectation that the Rust test wrote.

Usage: read_tables.py EXPECTATION_JSON

The expectation maps each table to {"folder": ..., "glob": ..., "rows": N,
"columns": [{"name": ..., "type": ..., "nullable": ...}]}, where type is
one of utf8, int32, int64, float32, float64, boolean, list<float32>. Exits 1 with one line per
mismatch, or prints one "ok" line per reader and table.
"""

import json
import sys

import duckdb
import pandas as pd
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

# What each reader reports for each Arrow type gaze writes.
PANDAS_DTYPES = {
    "utf8": {"object", "str", "string"},
    "int32": {"int32", "Int32"},
    "int64": {"int64", "Int64"},
    "float32": {"float32", "Float32"},
    "float64": {"float64", "Float64"},
    "boolean": {"bool", "boolean"},
    "list<float32>": {"object"},
}
POLARS_DTYPES = {
    "utf8": pl.String,
    "int32": pl.Int32,
    "int64": pl.Int64,
    "float32": pl.Float32,
    "float64": pl.Float64,
    "boolean": pl.Boolean,
    "list<float32>": pl.List(pl.Float32),
}
DUCKDB_TYPES = {
    "utf8": "VARCHAR",
    "int32": "INTEGER",
    "int64": "BIGINT",
    "float32": "FLOAT",
    "float64": "DOUBLE",
    "boolean": "BOOLEAN",
    "list<float32>": "FLOAT[]",
}
# Columns that may hold nulls: pandas reads null ints as float64 with NaN.
PANDAS_NULLABLE_INT = {"float64"}


def check_pandas(table, expected, errors):
    frame = pd.read_parquet(expected["folder"], engine="pyarrow")
    if len(frame) != expected["rows"]:
        errors.append(f"pandas {table}: {len(frame)} rows, expected {expected['rows']}")
    names = [column["name"] for column in expected["columns"]]
    if list(frame.columns) != names:
        errors.append(f"pandas {table}: columns {list(frame.columns)}, expected {names}")
    for column in expected["columns"]:
        name, arrow_type = column["name"], column["type"]
        if name not in frame.columns:
            continue
        dtype = str(frame[name].dtype)
        allowed = PANDAS_DTYPES[arrow_type]
        if arrow_type in ("int32", "int64") and column["nullable"] and frame[name].isna().any():
            allowed = allowed | PANDAS_NULLABLE_INT
        if dtype not in allowed:
            errors.append(f"pandas {table}.{name}: dtype {dtype}, expected one of {sorted(allowed)}")


def check_polars(table, expected, errors):
    frame = pl.read_parquet(expected["glob"])
    if frame.height != expected["rows"]:
        errors.append(f"polars {table}: {frame.height} rows, expected {expected['rows']}")
    for column in expected["columns"]:
        name, arrow_type = column["name"], column["type"]
        if name not in frame.schema:
            errors.append(f"polars {table}: column {name} missing")
        elif frame.schema[name] != POLARS_DTYPES[arrow_type]:
            errors.append(f"polars {table}.{name}: dtype {frame.schema[name]}, expected {POLARS_DTYPES[arrow_type]}")


def check_duckdb(table, expected, errors):
    connection = duckdb.connect()
    source = f"read_parquet('{expected['glob']}')"
    (rows,) = connection.sql(f"SELECT count(*) FROM {source}").fetchall()[0]
    if rows != expected["rows"]:
        errors.append(f"duckdb {table}: {rows} rows, expected {expected['rows']}")
    described = connection.sql(f"DESCRIBE SELECT * FROM {source}").fetchall()
    types = {row[0]: row[1] for row in described}
    for column in expected["columns"]:
        name, arrow_type = column["name"], column["type"]
        if types.get(name) != DUCKDB_TYPES[arrow_type]:
            errors.append(f"duckdb {table}.{name}: type {types.get(name)}, expected {DUCKDB_TYPES[arrow_type]}")


def check_pyarrow(table, expected, errors):
    schema = pq.read_table(expected["folder"]).schema
    for field in schema:
        if pa.types.is_dictionary(field.type):
            errors.append(f"pyarrow {table}.{field.name}: dictionary array, expected plain {field.type.value_type}")


def main():
    with open(sys.argv[1]) as handle:
        expectation = json.load(handle)
    errors = []
    for table, expected in expectation.items():
        for check in (check_pandas, check_polars, check_duckdb, check_pyarrow):
            before = len(errors)
            try:
                check(table, expected, errors)
            except Exception as error:  # report every reader's failure, not only the first
                errors.append(f"{check.__name__} {table}: {type(error).__name__}: {error}")
            if len(errors) == before:
                print(f"ok {check.__name__} {table}")
    for error in errors:
        print(f"MISMATCH {error}")
    sys.exit(1 if errors else 0)


if __name__ == "__main__":
    main()
