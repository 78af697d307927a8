-- Two dataset versions side by side, as in visit_assets/lib/versions.py (same rules, checked by the tests):
--   SELECT * FROM version_diff('sample', '<old dataset_version>', '<new dataset_version>');
-- returns (asset, item_id, image_id, change: added|removed|changed, reasons: sorted list of
-- metadata|prompt|model|sampling_config|code_version|other), for grouped_metadata (by image_id) and
-- generated_conversations, filtered_conversations, selected_subset (by conversation_id).
-- ${store} is filled in by visit_assets.lib.catalog. Each statement is tried in order and a failing one
-- (an asset or column not there yet) is skipped: every vd_raw_* macro is first an empty stub, then
-- replaced by the real one when its asset and columns exist, so version_diff always binds.

-- Dataset versions in ingestion order (as the dataset_versions view).
CREATE OR REPLACE MACRO vd_versions(p_ds) AS TABLE
SELECT dataset_version, min(ingested_at) AS ingested_at,
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

CREATE OR REPLACE MACRO vd_raw_conversation_stub() AS TABLE
SELECT NULL::VARCHAR AS asset, NULL::VARCHAR AS filename, NULL::VARCHAR AS dataset_version,
       NULL::VARCHAR AS conversation_id, NULL::VARCHAR AS image_id,
       NULL::STRUCT("from" VARCHAR, "value" VARCHAR)[] AS turns, NULL::VARCHAR AS code_version,
       NULL::VARCHAR AS filter_version, NULL::VARCHAR AS prompt_id, NULL::BIGINT AS prompt_version,
       NULL::VARCHAR AS llm_model, NULL::VARCHAR AS llm_weights, NULL::VARCHAR AS sampling_config
WHERE false;

CREATE OR REPLACE MACRO vd_raw_generated_conversations() AS TABLE SELECT * FROM vd_raw_conversation_stub();

CREATE OR REPLACE MACRO vd_raw_generated_conversations() AS TABLE
SELECT 'generated_conversations' AS asset, filename, dataset_version, conversation_id, image_id, turns, code_version,
       NULL::VARCHAR AS filter_version, prompt_id, prompt_version::BIGINT AS prompt_version,
       llm_model, llm_weights, sampling_config
FROM generated_conversations_all;

CREATE OR REPLACE MACRO vd_raw_filtered_conversations() AS TABLE SELECT * FROM vd_raw_conversation_stub();

CREATE OR REPLACE MACRO vd_raw_filtered_conversations() AS TABLE
SELECT 'filtered_conversations' AS asset, filename, dataset_version, conversation_id, image_id, turns, code_version,
       filter_version, prompt_id, prompt_version::BIGINT AS prompt_version,
       llm_model, llm_weights, sampling_config
FROM filtered_conversations_all;

-- The selected subset (InstructionGPT-4 selection): turns and code_version, no LLM lineage of its own.
CREATE OR REPLACE MACRO vd_raw_selected_subset() AS TABLE SELECT * FROM vd_raw_conversation_stub();

CREATE OR REPLACE MACRO vd_raw_selected_subset() AS TABLE
SELECT 'selected_subset' AS asset, filename, dataset_version, conversation_id, image_id, turns, code_version,
       NULL::VARCHAR AS filter_version, NULL::VARCHAR AS prompt_id, NULL::BIGINT AS prompt_version,
       NULL::VARCHAR AS llm_model, NULL::VARCHAR AS llm_weights, NULL::VARCHAR AS sampling_config
FROM selected_subset_all;

CREATE OR REPLACE MACRO vd_raw_conversations() AS TABLE
SELECT * FROM vd_raw_generated_conversations()
UNION ALL SELECT * FROM vd_raw_filtered_conversations()
UNION ALL SELECT * FROM vd_raw_selected_subset();

-- Data files: (asset, file, the dataset version its rows carry, that version's rank, mtime in whole seconds).
CREATE OR REPLACE MACRO vd_files(p_ds) AS TABLE
WITH f AS (
  SELECT * FROM (
    SELECT DISTINCT asset, filename, dataset_version FROM vd_raw_grouped_metadata()
    UNION ALL
    SELECT DISTINCT asset, filename, dataset_version FROM vd_raw_conversations())
  WHERE dataset_version IS NOT NULL
    AND starts_with(filename, '${store}/' || asset || '/dataset=' || p_ds || '/'))
SELECT f.asset, f.filename, regexp_extract(f.filename, '[^/]+$$') AS part, f.dataset_version, v.rnk,
       epoch(b.last_modified)::BIGINT AS mtime
FROM f
JOIN vd_versions(p_ds) v USING (dataset_version)
JOIN read_blob('${store}/*/*/*/*.parquet') b ON b.filename = f.filename;

-- Per asset and partition file name, the file holding the rows as of version p_v: the newest file of
-- p_v itself (tier 0), else the newest of an earlier version (1: not re-run for p_v), else the oldest of a
-- later one (2: rewritten at the same data version). Assets with no file at or before p_v are absent.
CREATE OR REPLACE MACRO vd_state(p_ds, p_v) AS TABLE
WITH f AS (SELECT * FROM vd_files(p_ds)),
t AS (SELECT rnk FROM vd_versions(p_ds) WHERE dataset_version = p_v),
c AS (
  SELECT f.*, CASE WHEN f.rnk = t.rnk THEN 0 WHEN f.rnk < t.rnk THEN 1 ELSE 2 END AS tier
  FROM f, t
  WHERE f.asset IN (SELECT f2.asset FROM f f2, t t2 WHERE f2.rnk <= t2.rnk)),
r AS (
  SELECT *, row_number() OVER (
    PARTITION BY asset, part
    ORDER BY tier, CASE WHEN tier < 2 THEN -mtime ELSE mtime END,
             CASE WHEN tier < 2 THEN filename END DESC NULLS LAST, filename) AS k
  FROM c)
SELECT asset, part, filename, dataset_version, tier FROM r WHERE k = 1;

-- grouped_metadata: one row per image.
CREATE OR REPLACE MACRO vd_grouped_metadata(p_ds, p_old, p_new) AS TABLE
WITH o AS (
  SELECT g.*, s.part AS _part FROM vd_raw_grouped_metadata() g
  JOIN vd_state(p_ds, p_old) s ON s.asset = 'grouped_metadata' AND g.filename = s.filename
                               AND g.dataset_version = s.dataset_version),
n AS (
  SELECT g.*, s.part AS _part FROM vd_raw_grouped_metadata() g
  JOIN vd_state(p_ds, p_new) s ON s.asset = 'grouped_metadata' AND g.filename = s.filename
                               AND g.dataset_version = s.dataset_version),
lo AS (SELECT _part, vd_set(code_version) AS code FROM o GROUP BY _part),
ln AS (SELECT _part, vd_set(code_version) AS code FROM n GROUP BY _part),
j AS (
  SELECT coalesce(n.image_id, o.image_id) AS item_id, coalesce(n._part, o._part) AS part,
         o.image_id IS NULL AS is_added, n.image_id IS NULL AS is_removed,
         (o.image_key IS DISTINCT FROM n.image_key OR o.width IS DISTINCT FROM n.width
          OR o.height IS DISTINCT FROM n.height OR o.image_mode IS DISTINCT FROM n.image_mode
          OR o.image_checked IS DISTINCT FROM n.image_checked OR o.captions IS DISTINCT FROM n.captions
          OR o.boxes IS DISTINCT FROM n.boxes OR o.qa IS DISTINCT FROM n.qa OR o.ocr IS DISTINCT FROM n.ocr
          OR o.sources IS DISTINCT FROM n.sources
          OR o.source_record_ids IS DISTINCT FROM n.source_record_ids) AS content_differs,
         o.code_version IS DISTINCT FROM n.code_version AS code_differs
  FROM o FULL OUTER JOIN n ON o.image_id = n.image_id),
d AS (
  SELECT j.item_id,
         CASE WHEN is_added THEN 'added' WHEN is_removed THEN 'removed'
              WHEN content_differs OR code_differs THEN 'changed' END AS change,
         list_sort(list_filter([
           CASE WHEN is_added OR is_removed OR content_differs THEN 'metadata' END,
           CASE WHEN vd_differ(lo.code, ln.code) THEN 'code_version' END], lv -> lv IS NOT NULL)) AS r
  FROM j LEFT JOIN lo ON lo._part = j.part LEFT JOIN ln ON ln._part = j.part
  WHERE j.item_id IS NOT NULL)
SELECT 'grouped_metadata' AS asset, item_id, item_id AS image_id, change,
       CASE WHEN len(r) = 0 THEN ['other'] ELSE r END AS reasons
FROM d WHERE change IS NOT NULL;

-- Conversation rows as of a version (every conversation asset, with the partition file each row is from).
CREATE OR REPLACE MACRO vd_rows(p_ds, p_v) AS TABLE
SELECT r.* EXCLUDE (filename, dataset_version), s.part AS _part
FROM vd_raw_conversations() r
JOIN vd_state(p_ds, p_v) s ON s.asset = r.asset AND s.filename = r.filename AND s.dataset_version = r.dataset_version;

-- Conversation assets: one row per conversation; "metadata" when its image's grouped metadata changed.
CREATE OR REPLACE MACRO vd_conversations(p_ds, p_old, p_new) AS TABLE
WITH o AS (
  SELECT * FROM vd_rows(p_ds, p_old)),
n AS (
  SELECT * FROM vd_rows(p_ds, p_new)),
lo AS (SELECT asset, _part, vd_set(code_version) AS code, vd_set(filter_version) AS filt, vd_set(llm_model) AS m,
              vd_set(llm_weights) AS w, vd_set(sampling_config) AS sc FROM o GROUP BY asset, _part),
ln AS (SELECT asset, _part, vd_set(code_version) AS code, vd_set(filter_version) AS filt, vd_set(llm_model) AS m,
              vd_set(llm_weights) AS w, vd_set(sampling_config) AS sc FROM n GROUP BY asset, _part),
po AS (SELECT asset, prompt_id, vd_set(prompt_version) AS pv FROM o WHERE prompt_id IS NOT NULL GROUP BY ALL),
pn AS (SELECT asset, prompt_id, vd_set(prompt_version) AS pv FROM n WHERE prompt_id IS NOT NULL GROUP BY ALL),
meta AS (SELECT DISTINCT image_id FROM vd_grouped_metadata(p_ds, p_old, p_new)
         WHERE list_contains(reasons, 'metadata')),
j AS (
  SELECT coalesce(n.asset, o.asset) AS asset, coalesce(n.conversation_id, o.conversation_id) AS item_id,
         CASE WHEN n.conversation_id IS NOT NULL THEN n.image_id ELSE o.image_id END AS image_id,
         coalesce(n._part, o._part) AS part,
         CASE WHEN n.conversation_id IS NOT NULL THEN n.prompt_id ELSE o.prompt_id END AS prompt_id,
         CASE WHEN o.conversation_id IS NULL THEN 'added' WHEN n.conversation_id IS NULL THEN 'removed'
              WHEN o.turns IS DISTINCT FROM n.turns OR o.code_version IS DISTINCT FROM n.code_version
                OR o.filter_version IS DISTINCT FROM n.filter_version OR o.prompt_id IS DISTINCT FROM n.prompt_id
                OR o.prompt_version IS DISTINCT FROM n.prompt_version OR o.llm_model IS DISTINCT FROM n.llm_model
                OR o.llm_weights IS DISTINCT FROM n.llm_weights
                OR o.sampling_config IS DISTINCT FROM n.sampling_config THEN 'changed' END AS change
  FROM o FULL OUTER JOIN n ON o.asset = n.asset AND o.conversation_id = n.conversation_id),
d AS (
  SELECT j.asset, j.item_id, j.image_id, j.change,
         list_sort(list_filter([
           CASE WHEN j.image_id IN (SELECT image_id FROM meta) THEN 'metadata' END,
           CASE WHEN vd_differ(po.pv, pn.pv) THEN 'prompt' END,
           CASE WHEN vd_differ(lo.m, ln.m) OR vd_differ(lo.w, ln.w) THEN 'model' END,
           CASE WHEN vd_differ(lo.sc, ln.sc) THEN 'sampling_config' END,
           CASE WHEN vd_differ(lo.code, ln.code) OR vd_differ(lo.filt, ln.filt) THEN 'code_version' END],
           lv -> lv IS NOT NULL)) AS r
  FROM j
  LEFT JOIN lo ON lo.asset = j.asset AND lo._part = j.part
  LEFT JOIN ln ON ln.asset = j.asset AND ln._part = j.part
  LEFT JOIN po ON po.asset = j.asset AND po.prompt_id = j.prompt_id
  LEFT JOIN pn ON pn.asset = j.asset AND pn.prompt_id = j.prompt_id
  WHERE j.item_id IS NOT NULL AND j.change IS NOT NULL)
SELECT asset, item_id, image_id, change, CASE WHEN len(r) = 0 THEN ['other'] ELSE r END AS reasons FROM d;

CREATE OR REPLACE MACRO version_diff(p_ds, p_old, p_new) AS TABLE
SELECT * FROM (
  SELECT asset, item_id, image_id, change, reasons FROM vd_grouped_metadata(p_ds, p_old, p_new)
  UNION ALL
  SELECT asset, item_id, image_id, change, reasons FROM vd_conversations(p_ds, p_old, p_new))
ORDER BY asset, item_id;
