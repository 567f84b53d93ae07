"""The control room in a real browser: what a learner sees after `make lab`."""

import os
import re
from pathlib import Path

import pytest
from playwright.sync_api import Locator, expect
from playwright.sync_api import TimeoutError as PlaywrightTimeout

from rtml.cards.projection import default_db_path
from rtml.cards.readmodel import ReadModel
from rtml.cluster import get_status
from rtml.features.windows import CUSTOMER_KINDS
from rtml.observe.trace import recent_transactions
from rtml.poll import until


@pytest.fixture()
def shots(tmp_path) -> Path:
    """Where screenshots go: docs/img with RTML_UPDATE_SCREENSHOTS=1 (make screenshots)."""
    if os.environ.get("RTML_UPDATE_SCREENSHOTS") == "1":
        return Path(__file__).resolve().parents[2] / "docs" / "img"
    return tmp_path


def _open(picker: Locator, option: Locator) -> Locator:
    """Click a select box until its options show, and return `option`.

    A click that lands while the page redraws opens a menu the redraw then drops (seen
    once in CI), so the check clicks again rather than waiting on a closed menu.
    """

    def shown() -> bool:
        picker.click()
        try:
            option.wait_for(state="visible", timeout=5_000)
        except PlaywrightTimeout:
            picker.press("Escape")
            return False
        return True

    until(shown, 60, "the options of a select box", interval=0.2)
    return option


def test_cluster_page_shows_three_brokers_up(control_room, page, cluster_settings):
    page.goto(control_room)
    expect(page.get_by_text("Brokers up")).to_be_visible(timeout=30_000)
    expect(page.get_by_text("3 / 3")).to_be_visible(timeout=30_000)
    controller = get_status(cluster_settings).controller
    expect(page.get_by_text(f"node {controller}").first).to_be_visible()
    # st.dataframe draws on a canvas; its cells are mirrored in an accessible grid, for the
    # rows in view only (a session cluster's partitions run past the first screen).
    expect(page.get_by_text(re.compile(r"Partitions \(\d+ in \d+ topics\)"))).to_be_visible()
    cells = page.locator("td[role=gridcell]")
    expect(cells.filter(has_text=re.compile(r"^ok$")).first).to_be_attached()
    expect(cells.filter(has_text=re.compile(r"^UP$"))).to_have_count(3)


def test_cluster_page_shows_live_transactions(control_room, page, lab, shots):
    page.goto(control_room)
    expect(page.get_by_text("3 / 3")).to_be_visible(timeout=30_000)
    # The simulator that `make lab` starts shows here: a rate once two samples exist.
    rate = page.get_by_test_id("stMetric").filter(has_text="Transactions/s")
    expect(rate).to_contain_text(re.compile(r"Transactions/s\s*[1-9][0-9]*\.[0-9]"), timeout=30_000)
    simulator = page.get_by_test_id("stMetric").filter(has_text="Live simulator")
    expect(simulator).to_contain_text("running")
    cells = page.locator("td[role=gridcell]")
    expect(cells.filter(has_text=re.compile(r"^running$"))).to_have_count(1)
    expect(page.get_by_role("button", name="Kill simulator")).to_be_visible()
    shots.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(shots / "cluster.png"), full_page=True)
    assert (shots / "cluster.png").stat().st_size > 10_000


def test_flow_page_shows_rates_lag_and_a_live_tail(control_room, page, lab, shots):
    page.goto(f"{control_room}/flow")
    expect(page.get_by_text("Messages per second")).to_be_visible(timeout=30_000)
    # A rate needs two samples 2 s apart; then plotly draws a line per topic that moves.
    chart = page.locator(".js-plotly-plot").first
    expect(chart).to_be_visible(timeout=30_000)
    expect(chart.locator(".legendtext", has_text="transactions").first).to_be_visible()
    expect(page.get_by_text("transactions /s")).to_be_visible()
    expect(page.get_by_text("Consumer lag")).to_be_visible()
    # The tail decodes Avro through the registry: its grid has the schema's fields.
    headers = page.locator("[role=columnheader]")
    expect(headers.filter(has_text="tx_amount").first).to_be_attached(timeout=30_000)
    expect(headers.filter(has_text="customer_id").first).to_be_attached()
    shots.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(shots / "flow.png"), full_page=True)
    assert (shots / "flow.png").stat().st_size > 10_000


def test_windows_page_draws_every_window_kind_of_a_customer(control_room, page, pipeline, shots):
    # Through the sidebar, as a learner gets there from the Cluster page.
    page.goto(control_room)
    page.get_by_role("link", name="Windows").click()
    heading = re.compile(r"^Customer \d+ \(the busiest customer")
    # The first visit imports the page's modules into the server: on a busy machine, seconds.
    expect(page.get_by_text(heading)).to_be_visible(timeout=60_000)
    # One colour (legend entry) per window kind, each bar from the window's start to its end.
    chart = page.locator(".js-plotly-plot").first
    expect(chart).to_be_visible(timeout=30_000)
    legend = chart.locator(".legendtext")
    expect(legend).to_have_count(len(CUSTOMER_KINDS))
    for kind in CUSTOMER_KINDS:
        expect(legend.filter(has_text=re.compile(f"^{kind}$"))).to_have_count(1)
    headers = page.locator("[role=columnheader]")
    expect(headers.filter(has_text=re.compile(r"^kind$")).first).to_be_attached(timeout=30_000)
    shots.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(shots / "windows.png"), full_page=True)
    assert (shots / "windows.png").stat().st_size > 10_000


def test_predictions_page_shows_the_model_scores_and_latency(control_room, page, pipeline, shots):
    page.goto(control_room)
    page.get_by_role("link", name="Predictions").click()
    metric = page.get_by_test_id("stMetric")
    expect(metric.filter(has_text="Model in service")).to_contain_text(
        re.compile(r"v\d{4}"), timeout=60_000
    )
    # The score stream: a scatter coloured by decision, then the newest rows.
    chart = page.locator(".js-plotly-plot").first
    expect(chart).to_be_visible(timeout=30_000)
    expect(chart.locator(".legendtext").first).to_be_visible()
    headers = page.locator("[role=columnheader]")
    expect(headers.filter(has_text="model_version").first).to_be_attached(timeout=30_000)
    p50 = metric.filter(has_text="event-to-prediction p50")
    expect(p50).to_contain_text(re.compile(r"p50\s*[0-9][0-9,]*\.[0-9]"), timeout=30_000)
    expect(page.get_by_role("button", name="Publish and hot-swap")).to_be_visible()
    shots.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(shots / "predictions.png"), full_page=True)
    assert (shots / "predictions.png").stat().st_size > 10_000


@pytest.mark.chaos
def test_a_broker_killed_and_restarted_from_the_cluster_page(control_room, page, local_cluster):
    page.goto(control_room)
    expect(page.get_by_text("3 / 3")).to_be_visible(timeout=30_000)
    page.get_by_role("button", name="Kill broker 2").click()
    expect(page.get_by_text("Node 2 killed (SIGKILL).")).to_be_visible(timeout=30_000)
    expect(page.get_by_text("2 / 3")).to_be_visible(timeout=30_000)
    assert not local_cluster.nodes[2].process.alive()

    page.get_by_role("button", name="Restart broker 2").click()
    # The page waits up to 300 s for the ISR to fill (minutes on a machine this busy).
    expect(page.get_by_text("Node 2 restarted and back in every ISR.")).to_be_visible(
        timeout=320_000
    )
    expect(page.get_by_text("3 / 3")).to_be_visible(timeout=30_000)
    assert local_cluster.nodes[2].process.alive()


def test_events_page_shows_the_read_model_and_traces_a_transaction(
    control_room, page, pipeline, shots
):
    # The read model fills once the pipeline's first flagged transactions are projected.
    path = default_db_path(pipeline.settings)
    until(
        lambda: path.is_file() and not recent_transactions(ReadModel(path)).empty,
        180,
        "a flagged transaction in the read model",
    )
    page.goto(control_room)
    page.get_by_role("link", name="Events").click()
    metric = page.get_by_test_id("stMetric")
    expect(metric.filter(has_text="Events")).to_contain_text(
        re.compile(r"Events\s*[1-9]"), timeout=60_000
    )
    expect(page.get_by_text("Services: in == handled + dlq")).to_be_visible()
    headers = page.locator("[role=columnheader]")
    expect(headers.filter(has_text="in == handled + dlq").first).to_be_attached(timeout=30_000)
    # Pick the newest alert or block from the list: its path shows hop by hop.
    picker = page.get_by_role("combobox", name="Recent alerts and blocks")
    expect(picker).to_be_visible(timeout=30_000)
    expect(picker).to_have_attribute("placeholder", "pick one to trace")
    _open(picker, page.get_by_role("option").first).click()
    # (the grid mirrors the columns in view only: the first ones)
    expect(headers.filter(has_text=re.compile(r"^hop$")).first).to_be_attached(timeout=60_000)
    expect(headers.filter(has_text=re.compile(r"^service$")).first).to_be_attached()
    expect(
        page.get_by_text(re.compile(r"^Every hop carries correlation id tx-\d+"))
    ).to_be_visible()
    cells = page.locator("td[role=gridcell]")
    for hop in ("prediction", "command", "event"):
        expect(cells.filter(has_text=re.compile(f"^{hop}$")).first).to_be_attached()
    expect(page.get_by_text("Dead-letter queues")).to_be_visible()
    expect(page.get_by_text("Browse and redrive")).to_be_visible()
    shots.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(shots / "events.png"), full_page=True)
    assert (shots / "events.png").stat().st_size > 10_000


def test_replay_page_refuses_a_running_group_and_rebuilds_the_projection(
    control_room, page, pipeline, shots
):
    page.goto(f"{control_room}/replay")
    expect(page.get_by_text("Reset a consumer group")).to_be_visible(timeout=60_000)
    # The first group is the decision service's, running: Kafka would refuse a reset.
    expect(page.get_by_text(re.compile(r"rtml-decisions.* has 1 active member"))).to_be_visible(
        timeout=60_000
    )
    # (the rest of the section follows the refusal once the services' status is read)
    expect(page.get_by_role("button", name="Stop the decisions service")).to_be_visible(
        timeout=60_000
    )
    page.get_by_role("button", name="Rebuild and compare").click()
    expect(
        page.get_by_text(re.compile(r"^Equal: replaying card-events from offset 0"))
    ).to_be_visible(timeout=300_000)
    headers = page.locator("[role=columnheader]")
    expect(headers.filter(has_text="rebuilt").first).to_be_attached(timeout=30_000)
    shots.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(shots / "replay.png"), full_page=True)
    assert (shots / "replay.png").stat().st_size > 10_000


@pytest.mark.chaos
def test_chaos_page_kills_a_leader_under_load_and_proves_nothing_was_lost(
    control_room, page, local_cluster, shots
):
    page.goto(control_room)
    page.get_by_role("link", name="Chaos").click()
    expect(page.get_by_text("Run a scenario")).to_be_visible(timeout=60_000)
    records = page.get_by_role("spinbutton", name="Records", exact=True)
    records.fill("20000")
    records.press("Enter")
    # Paced, so records are still being sent after the kill and a time to resume is measured.
    rate = page.get_by_role("spinbutton", name=re.compile(r"^Rate"))
    rate.fill("2000")
    rate.press("Enter")
    page.get_by_role("button", name="Run it").click()
    # The timeline fills while it runs: the kill, then the cluster's reaction to it.
    cells = page.locator("td[role=gridcell]")
    expect(cells.filter(has_text=re.compile(r"SIGKILL")).first).to_be_attached(timeout=120_000)
    expect(
        page.get_by_text(re.compile(r"^Passed: 20,000 acknowledged, 0 lost, 0 duplicated"))
    ).to_be_visible(timeout=300_000)
    metric = page.get_by_test_id("stMetric")
    expect(metric.filter(has_text="Lost")).to_contain_text(re.compile(r"Lost\s*0$"))
    expect(metric.filter(has_text="Time to resume")).to_contain_text(re.compile(r"\d+\.\d\d s"))
    assert get_status(local_cluster.settings).brokers_up == 3
    shots.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(shots / "chaos.png"), full_page=True)
    assert (shots / "chaos.png").stat().st_size > 10_000
