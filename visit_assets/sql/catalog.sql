-- Base of the catalog: which version of each partition is current.
CREATE OR REPLACE VIEW current_partitions AS
SELECT * FROM read_json('${store}/_current/*/*/*.json',
  columns = {asset: 'VARCHAR', dataset: 'VARCHAR', shard: 'INTEGER', data_version: 'VARCHAR',
             dataset_version: 'VARCHAR', code_version: 'VARCHAR', path: 'VARCHAR', rows: 'BIGINT',
             written_at: 'VARCHAR'});
