"""Catalog domain: the DuckDB views over the Parquet store, as an asset."""
