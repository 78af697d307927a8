"""End to end through the Dagster UI in headless Chromium: the whole asset graph is shown, a
partition is materialized by clicking, and its materialization metadata appears on the asset's page.

Expected values come from the definitions (asset keys), the run's own materialization events and
the Parquet store, never from numbers written here. Screenshots: the test's tmp_path (printed) and
bench/out/ui/<test>/; with VISIT_UPDATE_DOCS_IMG=1 the full graph also goes to docs/img/asset-graph.png (the user guide's).
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote

import dagster as dg
import pytest
from playwright.sync_api import Locator, Page, expect
from playwright.sync_api import TimeoutError as PlaywrightTimeoutError

from visit_assets import settings
from visit_assets.definitions import defs
from visit_assets.lib.storage import ParquetStore
from visit_assets.runner import run_dataset

if TYPE_CHECKING:
    from conftest import DagsterUI  # tests/ui/conftest.py

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("dagster_dev")]

REPO = Path(__file__).resolve().parents[2]

DOCS_GRAPH = REPO / "docs" / "img" / "asset-graph.png"
DETAIL_SCALE = 0.62  # Dagster draws full graph nodes, names untruncated, from zoom 0.6 (its MINIMAL_SCALE)
RUN_TIMEOUT = 180
PLOT_ASSET, PLOT_LABEL = "selected_subset", "score_plot"
PLOT_DATASET = "sample_selection"  # its own partition: the in-process chain never races the clicked runs

# Graph nodes carry no test ids; these CSS-module class prefixes are Dagster 1.13's.
NODE_NAME = '[class*="AssetNode_assetName"]'  # zoomed out, nodes keep this class and add the next one
MINIMAL_NODE_NAME = '[class*="AssetNode_minimalName"]'  # names middle-truncated ("gene…_instructions")
COLLAPSED_GROUP = '[class*="CollapsedGroupNode_collapsedGroupNodeBox"]'
# The graph is one <svg> sized to its layout at zoom 1, inside a transformed div, inside the pane.
GRAPH_GEOMETRY = """() => {
  const area = (s) => s.width.baseVal.value * s.height.baseVal.value;
  const svg = [...document.querySelectorAll('svg[width][height]')].sort((a, b) => area(b) - area(a))[0];
  const pane = svg.parentElement.parentElement.getBoundingClientRect();
  return {width: svg.width.baseVal.value, height: svg.height.baseVal.value,
          pane: {x: pane.x, y: pane.y, width: pane.width, height: pane.height}};
}"""


def display_name(key: dg.AssetKey) -> str:
    return "/".join(key.path)


# ---------------------------------------------------------------- asset graph

def show_global_asset_graph(page: Page, ui: DagsterUI) -> dict:
    """Global asset lineage, every group expanded, zoomed to fit a window big enough for full nodes.

    Dagster collapses the groups of a large graph, and below zoom 0.6 draws nodes "minimal", with
    middle-truncated names. The lineage page zooms to fit on load, so: expand, measure the laid-out
    graph, resize the window to fit it at DETAIL_SCALE, reload. Returns the graph pane's rectangle.
    """
    page.goto(f"{ui.url}/asset-groups")
    page.locator(f"{NODE_NAME}, {COLLAPSED_GROUP}").first.wait_for()
    if page.locator(COLLAPSED_GROUP).count():
        page.keyboard.press("Alt+e")  # "Expand all groups" (⌥E, also in a group node's menu); kept in the URL
        expect(page.locator(COLLAPSED_GROUP)).to_have_count(0)
    graph, window = page.evaluate(GRAPH_GEOMETRY), page.viewport_size
    around = {d: window[d] - graph["pane"][d] for d in ("width", "height")}  # navigation, sidebar, toolbar
    page.set_viewport_size({d: max(window[d], math.ceil(around[d] + graph[d] * DETAIL_SCALE)) for d in around})
    page.evaluate("localStorage.removeItem('lineageGraphZoomLevel')")  # else the reload keeps the last zoom
    page.reload()
    page.locator(NODE_NAME).first.wait_for()
    return page.evaluate(GRAPH_GEOMETRY)["pane"]


def expect_graph_shows(page: Page, names: list[str]) -> None:
    for name in names:
        node = page.locator(f'{NODE_NAME} [data-tooltip="{name}"]')
        expect(node, f"asset {name} is not drawn as a full node in the asset graph").to_be_visible()
    expect(page.locator(MINIMAL_NODE_NAME)).to_have_count(0)
    drawn = page.locator(f"{NODE_NAME} [data-tooltip]").evaluate_all("els => els.map(e => e.dataset.tooltip)")
    assert sorted(drawn) == sorted(names), "the graph draws assets that the definitions do not have"


# ---------------------------------------------------------------- launching and waiting

def launch_partition_run(page: Page, ui: DagsterUI, asset: str, keys: list[str]) -> str:
    """Materialize… on the asset's page, one key per partition dimension, Launch 1 run; the run id."""
    page.goto(f"{ui.url}/assets/{asset}")
    page.get_by_role("button").filter(has_text=re.compile(r"^Materialize")).first.click()
    launch = _past_confirmations(page)
    for key in keys:  # dimensions in the dialog's order (dataset, then shard)
        _choose_partition(page, launch, key)
    expect(launch).to_contain_text("1 partition")
    launch.get_by_role("button", name="Launch 1 run").click()
    toast = page.get_by_role("region", name=re.compile("Notifications")).get_by_role("link", name="View")
    href = toast.first.get_attribute("href")
    assert href and href.startswith("/runs/"), href
    return href.rsplit("/", 1)[1]


def _past_confirmations(page: Page) -> Locator:
    """Confirm the dialogs Dagster may show before the launch dialog: "Additional assets will be
    materialized" (a multi-asset that cannot be subset), "Are you sure?" (upstream never materialized)."""
    launch = page.get_by_role("dialog").filter(has_text="Launch runs to materialize")
    confirm = page.get_by_role("dialog").filter(has=page.get_by_role("button", name="Confirm", exact=True))
    for _ in range(4):
        expect(launch.or_(confirm).first).to_be_visible()
        if launch.is_visible():
            return launch
        title = confirm.first.inner_text().strip().splitlines()[0]
        confirm.first.get_by_role("button", name="Confirm", exact=True).click()
        # the next question may reuse the same dialog element: wait for this one's text to go
        expect(page.get_by_role("dialog").filter(has_text=title)).to_have_count(0)
    expect(launch).to_be_visible()
    return launch


def _choose_partition(page: Page, launch: Locator, key: str) -> None:
    """Pick `key` in the first dimension still showing its placeholder. The list can close under the
    pointer while the dialog is still loading (seen once in a dozen runs): open it again."""
    item = page.get_by_role("menuitem", name=re.compile(rf"^{re.escape(key)}\b"))
    for attempt in range(3):
        if not item.is_visible():
            launch.get_by_text("Select a partition or create one").first.click()
        try:
            item.click(timeout=5_000)
            break
        except PlaywrightTimeoutError:
            if attempt == 2:
                raise
    launch.get_by_text("Launch runs to materialize").click()  # a click outside closes the list


def wait_for_run(ui: DagsterUI, run_id: str, timeout: float = RUN_TIMEOUT) -> None:
    """Queued (dagster.yaml) until the daemon dequeues it, then run by the code server."""
    deadline = time.monotonic() + timeout
    while not (run := ui.instance.get_run_by_id(run_id)) or not run.is_finished:
        if time.monotonic() > deadline:
            pytest.fail(f"run {run_id} is still {run.status if run else 'unknown'} after {timeout}s\n"
                        f"{ui.log_tail()}")
        time.sleep(0.5)
    if run.status != dg.DagsterRunStatus.SUCCESS:
        errors = [e.user_message for e in ui.instance.all_logs(run_id) if e.level >= logging.ERROR]
        pytest.fail(f"run {run_id} ended {run.status}: {errors[-3:]}")


def run_metadata(ui: DagsterUI, run_id: str) -> dict[str, dict]:
    """Metadata of each asset the run materialized, as recorded in the event log."""
    records = ui.instance.get_records_for_run(run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION).records
    out = {}
    for record in records:
        mat = record.event_log_entry.asset_materialization
        out[display_name(mat.asset_key)] = {k: v.value for k, v in mat.metadata.items()}
    return out


# ---------------------------------------------------------------- asset page metadata

def open_metadata(page: Page, ui: DagsterUI, asset: str, partition: str | None = None, run_id: str | None = None,
                  label: str = "dagster/row_count") -> None:
    """The asset's latest materialization and its metadata table (until `label` shows): of one
    partition on the Partitions tab, or, for an unpartitioned asset, on the Events tab."""
    view = f"view=partitions&partition={quote(partition)}" if partition is not None else "view=events"
    page.goto(f"{ui.url}/assets/{asset}?{view}")
    if run_id:  # the latest materialization shown is the one the run made
        expect(page.locator(f'a[href^="/runs/{run_id}"]').first).to_be_visible()
    expect(page.get_by_role("cell", name=label, exact=True)).to_be_visible()


def metadata_value(page: Page, label: str) -> Locator:
    row = page.get_by_role("row").filter(has=page.get_by_role("cell", name=label, exact=True))
    return row.get_by_role("cell").nth(1)


def ui_int(page: Page, label: str) -> int:
    return int(metadata_value(page, label).inner_text().strip().replace(",", ""))


def ui_json(page: Page, label: str):
    return json.loads(metadata_value(page, label).inner_text())


def expect_metadata_image(page: Page, ui: DagsterUI, asset: str, label: str,
                          partition: str | None = None) -> Locator:
    """The asset's page shows an <img> for markdown metadata `label` (e.g. a plot as a PNG data URI),
    and the image has loaded. Short markdown renders inside the metadata table; long markdown sits
    behind "[Show Markdown]", which opens it in a dialog."""
    open_metadata(page, ui, asset, partition, label=label)
    cell = metadata_value(page, label)
    image = cell.locator("img")
    if not image.count():
        cell.get_by_text("[Show Markdown]").click()
        image = page.get_by_role("dialog").locator("img")
    expect(image.first).to_be_visible()
    assert image.first.evaluate("img => img.complete && img.naturalWidth > 0"), f"{asset} {label}: image not loaded"
    return image.first


# ---------------------------------------------------------------- in-process upstream of the plot

def materialize_plot_upstream(ui: DagsterUI, dataset: str) -> list[str]:
    """Everything upstream of PLOT_ASSET (and PLOT_ASSET), in-process, for a dataset of its own."""
    shutil.copytree(settings.sample_dataset(), ui.visit_home / "datasets" / dataset)
    graph = defs.resolve_asset_graph()
    selection = dg.AssetSelection.assets(PLOT_ASSET).upstream().required_multi_asset_neighbors()
    only = [key.to_user_string() for key in selection.resolve(graph)]
    instance = dg.DagsterInstance.from_config(str(ui.dagster_home))
    try:
        run_dataset(defs, dataset, instance, only=only, log=lambda _: None)
    finally:
        instance.dispose()
    return only


def shot(page: Page, out: Path, name: str, **kwargs) -> Path:
    path = out / f"{name}.png"
    page.screenshot(path=str(path), **kwargs)
    return path


# ---------------------------------------------------------------- the test

def test_asset_graph_click_materialize_and_metadata(dagster_ui: DagsterUI, page: Page, ui_out: Path):
    ui, store = dagster_ui, ParquetStore(dagster_ui.visit_home / "store")
    names = sorted(display_name(k) for k in defs.resolve_all_asset_keys())
    has_plot = dg.AssetKey(PLOT_ASSET) in defs.resolve_all_asset_keys()
    started = time.monotonic()

    def progress(what: str) -> None:  # timings, shown with the captured output of a failure
        print(f"{time.monotonic() - started:6.1f}s {what}")

    with ThreadPoolExecutor(max_workers=1) as pool:
        # (1) the global asset graph shows every asset of the definitions (nothing materialized yet)
        window = page.viewport_size
        pane = show_global_asset_graph(page, ui)
        expect_graph_shows(page, names)
        shot(page, ui_out, "asset-graph-window")
        graph = shot(page, ui_out, "asset-graph", clip=pane)
        if os.environ.get("VISIT_UPDATE_DOCS_IMG"):  # refresh the user guide's picture on request only
            DOCS_GRAPH.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(graph, DOCS_GRAPH)
        page.set_viewport_size(window)
        progress("asset graph checked")

        # The plot's upstream, ~20 in-process runs mostly waiting on SQLite and model loading,
        # overlaps the clicks below.
        plot_upstream = pool.submit(materialize_plot_upstream, ui, PLOT_DATASET) if has_plot else None

        # (2) materialize by clicking: the dataset-level ingest, then one dataset x shard partition;
        # (3) each asset's page shows the metadata its run recorded
        run_id = launch_partition_run(page, ui, "source_records", ["sample"])
        wait_for_run(ui, run_id)
        progress("source_records [sample] materialized from the UI")
        meta = run_metadata(ui, run_id)["source_records"]
        open_metadata(page, ui, "source_records", "sample", run_id)
        shot(page, ui_out, "source_records-sample")
        rows = ui_int(page, "dagster/row_count")
        assert rows == meta["dagster/row_count"] == store.current("source_records", "sample")["rows"] > 0
        by_kind = ui_json(page, "records_by_kind")
        assert by_kind == meta["records_by_kind"] and sum(by_kind.values()) == rows

        partition = str(dg.MultiPartitionKey({"dataset": "sample", "shard": "0"}))  # "sample|0"
        run_id = launch_partition_run(page, ui, "grouped_metadata", ["sample", "0"])
        wait_for_run(ui, run_id)
        progress(f"grouped_metadata + metadata_rejects [{partition}] materialized from the UI")
        meta = run_metadata(ui, run_id)
        assert set(meta) == {"grouped_metadata", "metadata_rejects"}

        open_metadata(page, ui, "grouped_metadata", partition, run_id)
        shot(page, ui_out, "grouped_metadata-sample-0")
        grouped = ui_int(page, "dagster/row_count")
        assert grouped == meta["grouped_metadata"]["dagster/row_count"] > 0
        assert grouped == store.current("grouped_metadata", "sample", 0)["rows"]
        assert ui_int(page, "source_records") == meta["grouped_metadata"]["source_records"]

        open_metadata(page, ui, "metadata_rejects", partition, run_id)
        shot(page, ui_out, "metadata_rejects-sample-0")
        rejects = ui_int(page, "dagster/row_count")
        assert rejects == meta["metadata_rejects"]["dagster/row_count"]
        assert rejects == store.current("metadata_rejects", "sample", 0)["rows"]
        by_reason = ui_json(page, "rejects_by_reason")
        assert by_reason == meta["metadata_rejects"]["rejects_by_reason"] and sum(by_reason.values()) == rejects
        progress("metadata checked")

        # (4) a plot in the metadata: the selection's score distributions, a PNG data URI in markdown
        if plot_upstream is not None:
            materialized = plot_upstream.result(timeout=RUN_TIMEOUT * 2)
            progress(f"{PLOT_ASSET} [{PLOT_DATASET}] and its upstream materialized in-process")
            image = expect_metadata_image(page, ui, PLOT_ASSET, PLOT_LABEL, PLOT_DATASET)
            assert (image.get_attribute("src") or "").startswith("data:image/png;base64,")
            shot(page, ui_out, f"{PLOT_ASSET}-{PLOT_LABEL}")
            progress(f"{PLOT_LABEL} shown")
            if "seed_instructions" in materialized:  # unpartitioned: the metadata is on the Events tab
                seeds = ui.instance.get_latest_materialization_event(dg.AssetKey("seed_instructions"))
                open_metadata(page, ui, "seed_instructions")
                expected = seeds.asset_materialization.metadata["dagster/row_count"].value
                assert ui_int(page, "dagster/row_count") == expected
