-- Applied once per asset that has data. ${asset} and ${store} are filled in by visit_assets.lib.catalog
-- (both are validated names/paths, never user SQL).
-- <asset>_all: every version ever written; <asset>: only the current version of each partition.
CREATE OR REPLACE VIEW ${asset}_all AS
SELECT * FROM read_parquet('${store}/${asset}/*/*/*.parquet', union_by_name = true, filename = true);

CREATE OR REPLACE VIEW ${asset} AS
SELECT a.* EXCLUDE (filename)
FROM ${asset}_all a
JOIN current_partitions c ON c.asset = '${asset}' AND a.filename = '${store}/' || c.path;
