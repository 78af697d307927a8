"""A local, read-only data viewer: the catalog's views over the Parquet store, as web pages.

    visit-assets viewer            (or `make viewer`) serves http://127.0.0.1:8700

queries.py is plain SQL over the catalog (no Dagster), reader.py opens the store, app.py maps
pages to queries and templates/. See docs/viewer.md.
"""
