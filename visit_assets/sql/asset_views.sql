-- Applied once per asset that has data. ${asset} and ${store} are filled in by visit_assets.lib.catalog
-- (both are validated names/paths, never user SQL).
-- <asset>_all: every version ever written; <asset>: only the current version of each partition.
CREATE OR REPLACE VIEW ${asset}_all AS
SELECT * FROM read_parquet('${store}/${asset}/*/*/*.parquet', union_by_name = true, filename = true);

-- ${pointers}: the asset's own pointer files (a few dozen, where current_partitions reads every
-- asset's: hundreds at COCO scale, parsed again by every query naming the view), or all of them
-- when the asset has none yet.
CREATE OR REPLACE VIEW ${asset} AS
SELECT a.* EXCLUDE (filename)
FROM ${asset}_all a
JOIN read_json('${pointers}', columns = {asset: 'VARCHAR', path: 'VARCHAR'}) c
  ON c.asset = '${asset}' AND a.filename = '${store}/' || c.path;
