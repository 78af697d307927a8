-- Two dataset versions side by side: the one implementation of the rules. visit_assets/lib/versions.py
-- (`visit-assets diff`, the viewer's versions pages, the export manifest) runs these macros in an
-- in-memory DuckDB over the store (lib/catalog.py: version_diff_connection) and only shapes their
-- results; tests/test_version_diff.py checks those results. In the catalog:
--   SELECT * FROM version_diff('sample', '<old dataset_version>', '<new dataset_version>');
-- returns (asset, item_id, image_id, change: added|removed|changed, reasons: sorted list of
-- metadata|prompt|model|sampling_config|code_version|other), for grouped_metadata (by image_id) and
-- generated_conversations, filtered_conversations, selected_subset (by conversation_id).
-- vd_items(ds, old, new) is every item of either version, unchanged ones too, with image_key and, for a
-- changed image, the metadata `fields` that differ (vd_changes: the same, changed items only);
-- vd_states(ds, old, new) names, per side, the file holding each partition's rows (vd_state(ds, v):
-- one version).
--
-- The rows "as of" a dataset version V (the rows of a partition carry the dataset_version that produced
-- them; the pointer files only name the current one), per asset and partition file name
-- (shard=<s>.parquet / all.parquet):
--   1. exact:   the newest file whose rows carry V;
--   2. earlier: else the newest file whose rows carry a version ingested before V (the partition was
--               not re-run for V: its rows were still current then);
--   3. later:   else, if the asset had any file at or before V, the oldest file of a later version.
--               Stores written before ParquetStore.write kept a data version's first file may hold V's
--               rows overwritten by a later re-run that reached the same data version (equal data
--               versions promise equal content): that later file stands for V.
-- An asset without any file at or before V is absent at V; a file without rows carries no version.
-- "Newest" is by modification time in whole seconds (read_blob), ties broken by path. Versions are
-- ordered by their first ingested_at in source_records (as the dataset_versions view).
-- An item is added, removed or changed (same key, different content or lineage columns); its reasons:
--   metadata         its image's grouped metadata (captions, boxes, QA, OCR, size, sources) differs
--   prompt           its prompt_id is at a different set of prompt_version values in the asset
--   model            llm_model / llm_weights of its partition differ
--   sampling_config  sampling_config of its partition differs
--   code_version     code_version (or filter_version) of its partition differs
--   other            none of these (upstream seeds or clustering, a non-deterministic model)
--
-- ${store} is filled in by visit_assets.lib.catalog. Each statement is tried in order and a failing one
-- (an asset or column not there yet) is skipped: every vd_raw_* macro is first an empty stub, then
-- replaced by the real one when its asset and columns exist, so version_diff always binds.

-- Dataset versions in ingestion order (as the dataset_versions view).
CREATE OR REPLACE MACRO vd_versions(p_ds) AS TABLE
SELECT dataset_version, min(ingested_at) AS ingested_at, count(*) AS source_records,
       row_number() OVER (ORDER BY min(ingested_at), dataset_version) AS rnk
FROM source_records_all
WHERE starts_with(filename, '${store}/source_records/dataset=' || p_ds || '/') AND dataset_version IS NOT NULL
GROUP BY dataset_version;

CREATE OR REPLACE MACRO vd_set(x) AS list_sort(list_distinct(list(x)));

CREATE OR REPLACE MACRO vd_differ(a, b) AS coalesce(len(a), 0) > 0 AND coalesce(len(b), 0) > 0 AND a <> b;

-- Each asset's rows in one shape, straight from its <asset>_all view, every dataset. These take no
-- parameter so that they bind when created: a missing asset or column fails here and leaves the empty stub
-- in place (DuckDB defers binding of a macro whose expressions involve its parameters to each call).
CREATE OR REPLACE MACRO vd_raw_grouped_metadata() AS TABLE
SELECT NULL::VARCHAR AS asset, NULL::VARCHAR AS filename, NULL::VARCHAR AS dataset_version, NULL::VARCHAR AS image_id,
       NULL::VARCHAR AS image_key, NULL::BIGINT AS width, NULL::BIGINT AS height, NULL::VARCHAR AS image_mode,
       NULL::BOOLEAN AS image_checked, NULL::VARCHAR[] AS captions,
       NULL::STRUCT(label VARCHAR, x1 DOUBLE, y1 DOUBLE, x2 DOUBLE, y2 DOUBLE)[] AS boxes,
       NULL::STRUCT(question VARCHAR, answer VARCHAR)[] AS qa, NULL::VARCHAR[] AS ocr, NULL::VARCHAR[] AS sources,
       NULL::VARCHAR[] AS source_record_ids, NULL::VARCHAR AS code_version
WHERE false;

CREATE OR REPLACE MACRO vd_raw_grouped_metadata() AS TABLE
SELECT 'grouped_metadata' AS asset, filename, dataset_version, image_id, image_key, width, height, image_mode,
       image_checked, captions, boxes, qa, ocr, sources, source_record_ids, code_version
FROM grouped_metadata_all;

-- The lineage columns of a conversation, typed. Each conversation asset is read through UNION ALL BY NAME
-- with this empty row, so a column its files lack (filter_version outside filtered_conversations; the LLM
-- lineage of a selection without it) reads as NULL: absent, hence never a difference.
CREATE OR REPLACE MACRO vd_conversation_lineage() AS TABLE
SELECT NULL::VARCHAR AS image_id, NULL::VARCHAR AS image_key, NULL::VARCHAR AS code_version,
       NULL::VARCHAR AS filter_version, NULL::VARCHAR AS prompt_id, NULL::BIGINT AS prompt_version,
       NULL::VARCHAR AS llm_model, NULL::VARCHAR AS llm_weights, NULL::VARCHAR AS sampling_config
WHERE false;

CREATE OR REPLACE MACRO vd_raw_conversation_stub() AS TABLE
SELECT NULL::VARCHAR AS asset, NULL::VARCHAR AS filename, NULL::VARCHAR AS dataset_version,
       NULL::VARCHAR AS conversation_id, NULL::STRUCT("from" VARCHAR, "value" VARCHAR)[] AS turns, *
FROM vd_conversation_lineage();

CREATE OR REPLACE MACRO vd_raw_generated_conversations() AS TABLE SELECT * FROM vd_raw_conversation_stub();

CREATE OR REPLACE MACRO vd_raw_generated_conversations() AS TABLE
SELECT 'generated_conversations' AS asset, filename, dataset_version, conversation_id, turns, image_id, image_key,
       code_version, filter_version, prompt_id, prompt_version::BIGINT AS prompt_version, llm_model, llm_weights,
       sampling_config
FROM (FROM vd_conversation_lineage() UNION ALL BY NAME FROM generated_conversations_all);

CREATE OR REPLACE MACRO vd_raw_filtered_conversations() AS TABLE SELECT * FROM vd_raw_conversation_stub();

CREATE OR REPLACE MACRO vd_raw_filtered_conversations() AS TABLE
SELECT 'filtered_conversations' AS asset, filename, dataset_version, conversation_id, turns, image_id, image_key,
       code_version, filter_version, prompt_id, prompt_version::BIGINT AS prompt_version, llm_model, llm_weights,
       sampling_config
FROM (FROM vd_conversation_lineage() UNION ALL BY NAME FROM filtered_conversations_all);

-- The selected subset (InstructionGPT-4 selection): its rows carry their conversation's lineage when the
-- selection kept it.
CREATE OR REPLACE MACRO vd_raw_selected_subset() AS TABLE SELECT * FROM vd_raw_conversation_stub();

CREATE OR REPLACE MACRO vd_raw_selected_subset() AS TABLE
SELECT 'selected_subset' AS asset, filename, dataset_version, conversation_id, turns, image_id, image_key,
       code_version, filter_version, prompt_id, prompt_version::BIGINT AS prompt_version, llm_model, llm_weights,
       sampling_config
FROM (FROM vd_conversation_lineage() UNION ALL BY NAME FROM selected_subset_all);

CREATE OR REPLACE MACRO vd_raw_conversations() AS TABLE
SELECT * FROM vd_raw_generated_conversations()
UNION ALL SELECT * FROM vd_raw_filtered_conversations()
UNION ALL SELECT * FROM vd_raw_selected_subset();

-- Data files: (asset, file, the dataset version its rows carry, that version's rank, mtime in whole seconds).
-- read_blob lists only the dataset's folders: its modification times are all it reads.
CREATE OR REPLACE MACRO vd_files(p_ds) AS TABLE
WITH f AS (
  SELECT * FROM (
    SELECT DISTINCT asset, filename, dataset_version FROM vd_raw_grouped_metadata()
    UNION ALL
    SELECT DISTINCT asset, filename, dataset_version FROM vd_raw_conversations())
  WHERE dataset_version IS NOT NULL
    AND starts_with(filename, '${store}/' || asset || '/dataset=' || p_ds || '/'))
SELECT f.asset, f.filename, regexp_extract(f.filename, '[^/]+$$') AS part, f.dataset_version, v.rnk,
       floor(epoch(b.last_modified))::BIGINT AS mtime
FROM f
JOIN vd_versions(p_ds) v USING (dataset_version)
JOIN read_blob('${store}/*/dataset=' || p_ds || '/*/*.parquet') b ON b.filename = f.filename;

-- Per side (old, new), asset and partition file name, the file holding the rows as of that side's version:
-- the newest file of the version itself (tier 0), else the newest of an earlier version (1: not re-run for
-- it), else the oldest of a later one (2: rewritten at the same data version). Assets with no file at or
-- before the version are absent. Both sides in one pass: the files are listed once.
CREATE OR REPLACE MACRO vd_states(p_ds, p_old, p_new) AS TABLE
WITH f AS MATERIALIZED (SELECT * FROM vd_files(p_ds)),
t AS (SELECT s.side, v.rnk FROM vd_versions(p_ds) v
      JOIN (VALUES ('old', p_old), ('new', p_new)) s(side, dataset_version) USING (dataset_version)),
present AS (SELECT DISTINCT t.side, f.asset FROM f JOIN t ON f.rnk <= t.rnk),
c AS (
  SELECT t.side, f.*, CASE WHEN f.rnk = t.rnk THEN 0 WHEN f.rnk < t.rnk THEN 1 ELSE 2 END AS tier
  FROM f JOIN t ON true JOIN present p ON p.side = t.side AND p.asset = f.asset),
r AS (
  SELECT *, row_number() OVER (
    PARTITION BY side, asset, part
    ORDER BY tier, CASE WHEN tier < 2 THEN -mtime ELSE mtime END,
             CASE WHEN tier < 2 THEN filename END DESC NULLS LAST, filename) AS k
  FROM c)
SELECT side, asset, part, filename, dataset_version, tier FROM r WHERE k = 1;

CREATE OR REPLACE MACRO vd_state(p_ds, p_v) AS TABLE
SELECT asset, part, filename, dataset_version, tier FROM vd_states(p_ds, p_v, p_v) WHERE side = 'new';

-- Every item of either side: added, removed, changed (with its reasons: the rules above) or unchanged.
-- The unchanged ones let a caller count each side's items from the same pass over the rows.
CREATE OR REPLACE MACRO vd_items(p_ds, p_old, p_new) AS TABLE
WITH s AS MATERIALIZED (SELECT * FROM vd_states(p_ds, p_old, p_new)),
-- grouped_metadata: one row per image.
g AS MATERIALIZED (
  SELECT s.side, s.part AS _part, r.* EXCLUDE (filename, dataset_version)
  FROM vd_raw_grouped_metadata() r
  JOIN s ON s.asset = r.asset AND s.filename = r.filename AND s.dataset_version = r.dataset_version),
gl AS (SELECT side, _part, vd_set(code_version) AS code FROM g GROUP BY ALL),
gj AS (
  SELECT coalesce(n.image_id, o.image_id) AS item_id, coalesce(n._part, o._part) AS part,
         CASE WHEN n.image_id IS NOT NULL THEN n.image_key ELSE o.image_key END AS image_key,
         o.image_id IS NULL AS is_added, n.image_id IS NULL AS is_removed,
         list_filter([
           CASE WHEN o.image_key IS DISTINCT FROM n.image_key THEN 'image_key' END,
           CASE WHEN o.width IS DISTINCT FROM n.width THEN 'width' END,
           CASE WHEN o.height IS DISTINCT FROM n.height THEN 'height' END,
           CASE WHEN o.image_mode IS DISTINCT FROM n.image_mode THEN 'image_mode' END,
           CASE WHEN o.image_checked IS DISTINCT FROM n.image_checked THEN 'image_checked' END,
           CASE WHEN o.captions IS DISTINCT FROM n.captions THEN 'captions' END,
           CASE WHEN o.boxes IS DISTINCT FROM n.boxes THEN 'boxes' END,
           CASE WHEN o.qa IS DISTINCT FROM n.qa THEN 'qa' END,
           CASE WHEN o.ocr IS DISTINCT FROM n.ocr THEN 'ocr' END,
           CASE WHEN o.sources IS DISTINCT FROM n.sources THEN 'sources' END,
           CASE WHEN o.source_record_ids IS DISTINCT FROM n.source_record_ids THEN 'source_record_ids' END],
           lv -> lv IS NOT NULL) AS fields,
         o.code_version IS DISTINCT FROM n.code_version AS code_differs
  FROM (FROM g WHERE side = 'old') o FULL OUTER JOIN (FROM g WHERE side = 'new') n ON o.image_id = n.image_id),
gd AS (
  SELECT 'grouped_metadata' AS asset, gj.item_id, gj.item_id AS image_id, gj.image_key,
         CASE WHEN is_added THEN 'added' WHEN is_removed THEN 'removed'
              WHEN len(fields) > 0 OR code_differs THEN 'changed' ELSE 'unchanged' END AS change,
         list_sort(list_filter([
           CASE WHEN is_added OR is_removed OR len(fields) > 0 THEN 'metadata' END,
           CASE WHEN vd_differ(lo.code, ln.code) THEN 'code_version' END], lv -> lv IS NOT NULL)) AS r,
         fields
  FROM gj
  LEFT JOIN gl lo ON lo.side = 'old' AND lo._part = gj.part
  LEFT JOIN gl ln ON ln.side = 'new' AND ln._part = gj.part
  WHERE gj.item_id IS NOT NULL),
meta AS (SELECT item_id AS image_id FROM gd WHERE list_contains(r, 'metadata')),
-- Conversation assets: one row per conversation; "metadata" when its image's grouped metadata changed.
c AS MATERIALIZED (
  SELECT s.side, s.part AS _part, r.* EXCLUDE (filename, dataset_version)
  FROM vd_raw_conversations() r
  JOIN s ON s.asset = r.asset AND s.filename = r.filename AND s.dataset_version = r.dataset_version),
cl AS (SELECT side, asset, _part, vd_set(code_version) AS code, vd_set(filter_version) AS filt,
              vd_set(llm_model) AS m, vd_set(llm_weights) AS w, vd_set(sampling_config) AS sc
       FROM c GROUP BY ALL),
cp AS (SELECT side, asset, prompt_id, vd_set(prompt_version) AS pv FROM c WHERE prompt_id IS NOT NULL GROUP BY ALL),
cj AS (
  SELECT coalesce(n.asset, o.asset) AS asset, coalesce(n.conversation_id, o.conversation_id) AS item_id,
         CASE WHEN n.conversation_id IS NOT NULL THEN n.image_id ELSE o.image_id END AS image_id,
         CASE WHEN n.conversation_id IS NOT NULL THEN n.image_key ELSE o.image_key END AS image_key,
         coalesce(n._part, o._part) AS part,
         CASE WHEN n.conversation_id IS NOT NULL THEN n.prompt_id ELSE o.prompt_id END AS prompt_id,
         CASE WHEN o.conversation_id IS NULL THEN 'added' WHEN n.conversation_id IS NULL THEN 'removed'
              WHEN o.turns IS DISTINCT FROM n.turns OR o.code_version IS DISTINCT FROM n.code_version
                OR o.filter_version IS DISTINCT FROM n.filter_version OR o.prompt_id IS DISTINCT FROM n.prompt_id
                OR o.prompt_version IS DISTINCT FROM n.prompt_version OR o.llm_model IS DISTINCT FROM n.llm_model
                OR o.llm_weights IS DISTINCT FROM n.llm_weights
                OR o.sampling_config IS DISTINCT FROM n.sampling_config THEN 'changed' ELSE 'unchanged' END AS change
  FROM (FROM c WHERE side = 'old') o
  FULL OUTER JOIN (FROM c WHERE side = 'new') n ON o.asset = n.asset AND o.conversation_id = n.conversation_id),
cd AS (
  SELECT cj.asset, cj.item_id, cj.image_id, cj.image_key, cj.change,
         list_sort(list_filter([
           CASE WHEN cj.image_id IN (SELECT image_id FROM meta) THEN 'metadata' END,
           CASE WHEN vd_differ(po.pv, pn.pv) THEN 'prompt' END,
           CASE WHEN vd_differ(lo.m, ln.m) OR vd_differ(lo.w, ln.w) THEN 'model' END,
           CASE WHEN vd_differ(lo.sc, ln.sc) THEN 'sampling_config' END,
           CASE WHEN vd_differ(lo.code, ln.code) OR vd_differ(lo.filt, ln.filt) THEN 'code_version' END],
           lv -> lv IS NOT NULL)) AS r,
         NULL::VARCHAR[] AS fields
  FROM cj
  LEFT JOIN cl lo ON lo.side = 'old' AND lo.asset = cj.asset AND lo._part = cj.part
  LEFT JOIN cl ln ON ln.side = 'new' AND ln.asset = cj.asset AND ln._part = cj.part
  LEFT JOIN cp po ON po.side = 'old' AND po.asset = cj.asset AND po.prompt_id = cj.prompt_id
  LEFT JOIN cp pn ON pn.side = 'new' AND pn.asset = cj.asset AND pn.prompt_id = cj.prompt_id
  WHERE cj.item_id IS NOT NULL)
SELECT asset, item_id, image_id, image_key, change,
       CASE WHEN change = 'unchanged' THEN [] WHEN len(r) = 0 THEN ['other'] ELSE r END AS reasons,
       CASE WHEN change = 'changed' THEN fields END AS fields
FROM (SELECT * FROM gd UNION ALL BY NAME SELECT * FROM cd)
ORDER BY asset, item_id;

-- The added, removed and changed items, with image_key and fields.
CREATE OR REPLACE MACRO vd_changes(p_ds, p_old, p_new) AS TABLE
SELECT * FROM vd_items(p_ds, p_old, p_new) WHERE change <> 'unchanged' ORDER BY asset, item_id;

CREATE OR REPLACE MACRO version_diff(p_ds, p_old, p_new) AS TABLE
SELECT asset, item_id, image_id, change, reasons FROM vd_changes(p_ds, p_old, p_new) ORDER BY asset, item_id;
