"""The viewer's queries on the real sample store, checked against the Parquet files read with Polars
(ParquetStore, not the catalog), and on a store that has only its first assets."""

from __future__ import annotations

import contextlib

import polars as pl
import pytest

from visit_assets.lib.storage import ParquetStore
from visit_assets.viewer import queries
from visit_assets.viewer.reader import Reader

SHARDS = range(4)


@pytest.fixture(scope="module")
def parquet(sample_store) -> ParquetStore:
    return ParquetStore(sample_store.store)


def _read(parquet: ParquetStore, asset: str) -> pl.DataFrame:
    """The current rows of an asset, every partition (dataset x shard, or dataset)."""
    if parquet.current(asset, "sample") is not None:
        return parquet.read(asset, "sample")
    return parquet.read_shards(asset, "sample", SHARDS)


def test_rows_per_asset_are_the_stored_rows(db, parquet):
    rows = {r["asset"]: r["rows"] for r in queries.asset_rows(db, "sample")}
    for asset in ("source_records", "grouped_metadata", "conversation_attempts", "filtered_conversations",
                  "selection_ranking", "visit_export"):
        assert rows[asset] == _read(parquet, asset).height, asset
    assert queries.datasets(db) == ["sample"]
    [version] = queries.dataset_versions(db, "sample")
    assert version["source_records"] == _read(parquet, "source_records").height


def test_rejects_by_stage_and_reason_match_the_reject_tables(db, parquet):
    found = {(r["stage"], r["reason"]): r for r in queries.rejects(db, "sample")}
    attempts = _read(parquet, "conversation_attempts").filter(pl.col("status") == "rejected")
    expected = {}
    for stage, frame in (("ingest", _read(parquet, "metadata_rejects")), ("generation", attempts),
                         ("filters", _read(parquet, "conversation_rejects")),
                         ("imported", _read(parquet, "imported_rejects"))):
        expected |= {(stage, reason): n for reason, n in frame.group_by("reason").len().iter_rows()}
    assert {k: r["records"] for k, r in found.items()} == expected
    assert {stage for stage, _ in expected} == set(queries.STAGE_ORDER)  # the faults reach every stage
    for r in found.values():
        assert len(r["examples"]) == min(r["records"], queries.EXAMPLES)
    stages = [r["stage"] for r in queries.rejects(db, "sample")]
    assert stages == sorted(stages, key=queries.STAGE_ORDER.index)


def test_prompt_types_count_attempts_accepted_kept_and_selected(db, parquet):
    attempts = _read(parquet, "conversation_attempts").filter(pl.col("status").is_in(["accepted", "rejected"]))
    kept = _read(parquet, "filtered_conversations")
    selected = _read(parquet, "selection_ranking").filter("selected").select("conversation_id")
    for row in queries.prompt_types(db, "sample"):
        mine = attempts.filter((pl.col("recipe") == row["recipe"]) & (pl.col("prompt_id") == row["prompt_id"]))
        kept_here = kept.filter((pl.col("recipe") == row["recipe"]) & (pl.col("prompt_id") == row["prompt_id"]))
        assert row["attempted"] == mine.height > 0
        assert row["accepted"] == mine.filter(pl.col("status") == "accepted").height
        assert row["kept"] == kept_here.height
        assert row["selected"] == kept_here.join(selected, on="conversation_id").height


def test_pages_hold_every_row_once_in_order(db, parquet):
    everything = queries.conversations(db, {}, page=1, page_size=10_000)
    expected = (_read(parquet, "generated_conversations").height + _read(parquet, "imported_conversations").height
                + _read(parquet, "conversation_attempts").filter(pl.col("status") == "rejected").height)
    assert everything["total"] == len(everything["rows"]) == expected
    pages, page = [], 1
    while True:
        got = queries.conversations(db, {}, page=page, page_size=10)
        assert got["total"] == expected and got["pages"] == -(-expected // 10)
        pages += got["rows"]
        if page == got["pages"]:
            break
        page += 1
    assert len(got["rows"]) == expected - 10 * (page - 1)
    key = lambda r: (r["origin"], r["conversation_id"], r["image_id"], r["recipe"], r["iteration"])  # noqa: E731
    assert [key(r) for r in pages] == [key(r) for r in everything["rows"]]
    assert len(set(map(key, pages))) == expected
    assert queries.conversations(db, {}, page=page + 1, page_size=10)["rows"] == []


def test_filters(db, parquet):
    selected = set(_read(parquet, "selection_ranking").filter("selected")["conversation_id"])
    got = queries.conversations(db, {"status": "selected"}, page_size=1000)
    assert {r["conversation_id"] for r in got["rows"]} == selected

    refused = set(_read(parquet, "conversation_rejects").filter(pl.col("reason") == "refusal")["conversation_id"])
    got = queries.conversations(db, {"reason": "refusal", "dataset": "sample"}, page_size=1000)["rows"]
    assert refused and {r["conversation_id"] for r in got} == refused and {r["stage"] for r in got} == {"filters"}

    got = queries.conversations(db, {"recipe": "mm-instruct", "prompt": "mminstruct.answer_generation"}, page_size=1000)
    assert got["total"] == _read(parquet, "generated_conversations").filter(pl.col("recipe") == "mm-instruct").height

    turns = _read(parquet, "filtered_conversations")["turns"][0]
    word = max(turns[-1]["value"].split(), key=len)  # a word of a real answer, searched in another case
    got = queries.conversations(db, {"text": word.upper()}, page_size=1000)["rows"]
    assert got and all(word.lower() in " ".join(t["value"] for t in r["turns"]).lower() for r in got)
    assert queries.conversations(db, {"text": "no turn says this 9f3k"})["total"] == 0
    assert queries.conversations(db, {"version": "not-a-version"})["total"] == 0


def _offset_page(db, filters: dict, page: int, page_size: int) -> list[tuple]:
    """The keys of a page as the views give them: every matching row sorted, then LIMIT/OFFSET (what
    the browse page did before it had its tables)."""
    views = queries.Db(db.con, db.views)  # no cache, no browse tables: the views only
    own = " AND ".join(queries.FILTERS[k] for k in filters) or "true"
    found = views.rows(f"WITH {queries._c(own)} SELECT {', '.join(queries.KEY)} FROM c {queries.ORDER} "
                       "LIMIT $limit OFFSET $offset", {**filters, "limit": page_size, "offset": (page - 1) * page_size})
    return [queries._key(r) for r in found]


def test_pages_from_the_browse_tables_are_the_views_pages(db, parquet):
    """Every page, the last and one past it included, holds the rows the old LIMIT/OFFSET query over
    the views gives, in its order; with a status filter (the joined path) too, against the views."""
    assert db.browse is not None
    recipe = _read(parquet, "generated_conversations")["recipe"][0]
    views = queries.Db(db.con, db.views)
    for filters in ({}, {"dataset": "sample"}, {"recipe": recipe}, {"dataset": "nowhere"}):
        total = queries.conversations(db, filters)["total"]
        assert total == queries.conversations(views, filters)["total"]
        for page in range(1, -(-total // 7) + 2):
            got = queries.conversations(db, filters, page=page, page_size=7)
            assert [queries._key(r) for r in got["rows"]] == _offset_page(db, filters, page, 7), (filters, page)
    assert queries.browse_tables(db).built_s is not None
    for filters in ({"status": "rejected"}, {"status": "selected", "recipe": recipe}):
        for page in (1, 2, 3):
            got, old = (queries.conversations(d, filters, page=page, page_size=5) for d in (db, views))
            assert [queries._key(r) for r in got["rows"]] == [queries._key(r) for r in old["rows"]]
            assert got["total"] == old["total"] and got["rows"] == old["rows"]


def test_text_search_is_a_case_insensitive_substring_of_the_turns(db, parquet):
    conversations = pl.concat([_read(parquet, a).select("conversation_id", "turns")
                               for a in ("generated_conversations", "imported_conversations")], how="diagonal")
    texts = {r["conversation_id"]: "\n".join(t["value"] for t in r["turns"]).lower()
             for r in conversations.iter_rows(named=True)}
    word = max((w for w in next(iter(texts.values())).split() if w.isascii() and w.isalpha()), key=len)
    needle = word[1:-1].swapcase()  # part of a word, in another case
    expected = {c for c, text in texts.items() if needle.lower() in text}
    assert needle.isascii() and 0 < len(expected) < len(texts)  # it finds some and leaves others out
    got = queries.conversations(db, {"text": needle}, page_size=10_000)
    assert got["total"] == len(expected) and {r["conversation_id"] for r in got["rows"]} == expected
    views = queries.Db(db.con, db.views)
    assert got["rows"] == queries.conversations(views, {"text": needle}, page_size=10_000)["rows"]
    paged = [r for p in (1, 2, 3) for r in queries.conversations(db, {"text": needle}, page=p, page_size=2)["rows"]]
    assert paged == got["rows"][:6]
    with_status = queries.conversations(db, {"text": needle, "status": "selected"}, page_size=10_000)
    assert with_status["rows"] == queries.conversations(views, {"text": needle, "status": "selected"},
                                                        page_size=10_000)["rows"]
    assert queries.conversations(db, {"text": "no turn says this 9f3k"})["total"] == 0


def test_one_image_with_its_facts_and_every_conversation(db, parquet):
    grouped = _read(parquet, "grouped_metadata").filter(pl.col("image_key") == "astronaut.jpg").row(0, named=True)
    image = queries.image(db, "sample", grouped["image_id"])
    assert image["boxes"] == grouped["boxes"] and image["captions"] == grouped["captions"]
    assert image["description"] and image["cluster"] is not None
    convs = queries.image_conversations(db, "sample", grouped["image_id"])
    ids = {r["conversation_id"] for r in convs if r["conversation_id"]}
    for asset in ("generated_conversations", "imported_conversations"):
        assert set(_read(parquet, asset).filter(pl.col("image_id") == grouped["image_id"])["conversation_id"]) <= ids
    scored = [r for r in convs if r["status"] in ("selected", "not selected")]
    assert scored and all(s["model"] for r in scored for s in r["scores"] if s["raw"] is not None)
    assert queries.image_facts(db, "sample", grouped["image_id"])


def test_a_store_with_only_its_first_assets(tmp_path):
    """Before conversations exist, every query answers (empty), instead of failing on a missing view."""
    store = ParquetStore(tmp_path / "store")
    frame = pl.DataFrame({"image_id": ["i1"], "image_key": ["a.jpg"], "dataset": ["d1"], "dataset_version": ["v1"],
                          "ingested_at": ["2026-01-01T00:00:00Z"], "reject_reason": [None]},
                         schema_overrides={"reject_reason": pl.String})
    store.write("source_records", "d1", "v1", frame, dataset_version="v1")
    with contextlib.closing(Reader(tmp_path / "store", tmp_path / "datasets")) as reader, \
            contextlib.closing(reader.db()) as db:
        assert queries.datasets(db) == ["d1"]
        assert queries.rejects(db, "d1") == [] and queries.prompt_types(db, "d1") == []
        assert queries.conversations(db, {"text": "x"})["total"] == 0
        assert queries.image(db, "d1", "i1")["image_key"] == "a.jpg"
        assert queries.image_conversations(db, "d1", "i1") == []


def test_a_viewer_started_before_the_first_run_shows_what_it_writes(tmp_path):
    """Started on a store with nothing in it yet, the viewer builds the views of the assets the first
    run writes on the next request, whatever page asks first."""
    with contextlib.closing(Reader(tmp_path / "store", tmp_path / "datasets")) as reader:
        with contextlib.closing(reader.db()) as db:
            assert queries.datasets(db) == []
        store = ParquetStore(tmp_path / "store")
        frame = pl.DataFrame({"image_id": ["i1"], "image_key": ["a.jpg"], "dataset": ["d1"], "dataset_version": ["v1"],
                              "ingested_at": ["2026-01-01T00:00:00Z"], "reject_reason": [None]},
                             schema_overrides={"reject_reason": pl.String})
        store.write("source_records", "d1", "v1", frame, dataset_version="v1")
        with contextlib.closing(reader.db()) as db:
            assert queries.image(db, "d1", "i1")["image_key"] == "a.jpg"
            assert queries.datasets(db) == ["d1"]


def test_kept_counts_and_choices_follow_the_store(tmp_path):
    """The browse page keeps its counts and filter choices per store state: a partition written
    since (its pointer replaced) is seen on the next page load."""
    store = ParquetStore(tmp_path / "store")

    def conversations(n: int, recipe: str) -> pl.DataFrame:
        return pl.DataFrame({"dataset": "d1", "dataset_version": "v1", "conversation_id": [f"c{k}" for k in range(n)],
                             "image_id": [f"i{k}" for k in range(n)], "image_key": [f"{k}.jpg" for k in range(n)],
                             "recipe": recipe, "prompt_id": "p", "prompt_version": 1, "iteration": 0,
                             "llm_model": "m", "llm_weights": "w", "code_version": "cv", "sampling_config": "{}",
                             "turns": [[{"from": "human", "value": "q"}, {"from": "gpt", "value": "a"}]] * n})

    store.write("generated_conversations", "d1", "v1", conversations(2, "r1"), shard=0, dataset_version="v1")
    with contextlib.closing(Reader(tmp_path / "store", tmp_path / "datasets")) as reader:
        for _ in range(2):  # the second load answers from what was kept
            with contextlib.closing(reader.db()) as db:
                assert queries.conversations(db, {})["total"] == 2
                assert queries.conversations(db, {"recipe": "r1"})["total"] == 2
                assert queries.filter_choices(db)["recipe"] == ["r1"]
                assert db.cache
        store.write("generated_conversations", "d1", "v2", conversations(3, "r2"), shard=0, dataset_version="v1")
        with contextlib.closing(reader.db()) as db:
            assert not db.cache and db.browse.generation == 1 and db.browse.built_s is None
            assert queries.conversations(db, {})["total"] == 3
            assert queries.conversations(db, {"recipe": "r1"})["total"] == 0
            assert queries.conversations(db, {"text": "Q"})["total"] == 3
            assert queries.filter_choices(db)["recipe"] == ["r2"]
            assert [r["conversation_id"] for r in queries.conversations(db, {}, page=2, page_size=2)["rows"]] == ["c2"]
        store.write("generated_conversations", "d1", "v3", conversations(4, "r3"), shard=0, dataset_version="v1")
        with contextlib.closing(reader.db()) as held:  # a request still reading generation 2 ...
            assert queries.conversations(held, {"recipe": "r3"}, page=2, page_size=3)["total"] == 4
            assert _browse_tables(held) == {"browse_rows_2", "browse_keys_2"}  # older, unused: dropped
            for version, n in (("v4", 5), ("v5", 6)):  # ... while two newer copies are built
                store.write("generated_conversations", "d1", version, conversations(n, "r4"), shard=0,
                            dataset_version="v1")
                with contextlib.closing(reader.db()) as db:
                    assert queries.conversations(db, {})["total"] == n
            # 3 was closed before 4 was built: dropped; 2 is still read: kept
            assert _browse_tables(held) == {f"browse_{t}_{g}" for t in ("rows", "keys") for g in (2, 4)}
            assert queries.conversations(held, {"recipe": "r3"}, page=1, page_size=3)["total"] == 4  # still there
        store.write("generated_conversations", "d1", "v6", conversations(1, "r5"), shard=0, dataset_version="v1")
        with contextlib.closing(reader.db()) as db:
            assert queries.conversations(db, {})["total"] == 1
            assert _browse_tables(db) == {"browse_rows_5", "browse_keys_5"}  # no one reads the others now


def _browse_tables(db) -> set[str]:
    return {t for (t,) in db.con.execute("SELECT table_name FROM duckdb_tables()").fetchall()}


def test_the_queries_and_the_reader_import_no_dagster():
    import subprocess
    import sys

    code = ("import sys, visit_assets.viewer.queries, visit_assets.viewer.reader\n"
            "bad = [m for m in sys.modules if m == 'dagster' or m.startswith('dagster.')]\nassert not bad, bad\n")
    subprocess.run([sys.executable, "-c", code], check=True)
