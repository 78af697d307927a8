"""Pure logic: no Dagster imports anywhere under this package (a test enforces it)."""
