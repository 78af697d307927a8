-- Derived views; each is created only when the assets it reads exist. (`rejects_by_reason`, a
-- union over whichever reject tables exist, is built in lib/catalog.py.)

-- One row per (image, source record) of the current grouped metadata: where each image came from.
-- Every version of source_records: an unchanged shard keeps the rows (and dataset version) that first
-- produced them. Joined on the image, the listed records kept by list_contains and made distinct at
-- the end: a query for one image then filters both scans (an unnest join, or de-duplicating every
-- source record first, read them all: bench/ui_catalog.py at 118k images).
CREATE OR REPLACE VIEW image_lineage AS
SELECT DISTINCT g.dataset, g.dataset_version, g.image_id, g.image_key, g.code_version,
       s.source, s.source_format, s.record_id, s.kind
FROM grouped_metadata g
JOIN source_records_all s
  ON s.dataset = g.dataset AND s.dataset_version = g.dataset_version AND s.image_id = g.image_id
WHERE list_contains(g.source_record_ids, s.record_id);

-- Every dataset version ever ingested, with its record accounting.
CREATE OR REPLACE VIEW dataset_versions AS
SELECT dataset, dataset_version, min(ingested_at) AS ingested_at, count(*) AS source_records,
       count(*) FILTER (WHERE reject_reason IS NOT NULL) AS loader_rejects
FROM source_records_all GROUP BY ALL ORDER BY dataset, ingested_at;
