"""The control room in a real browser: what a learner sees after `make lab`."""

import os
from pathlib import Path

import pytest
from playwright.sync_api import expect

from rtml.cluster import get_status


@pytest.fixture()
def shots(tmp_path) -> Path:
    """Where screenshots go: docs/img with RTML_UPDATE_SCREENSHOTS=1 (make screenshots)."""
    if os.environ.get("RTML_UPDATE_SCREENSHOTS") == "1":
        return Path(__file__).resolve().parents[2] / "docs" / "img"
    return tmp_path


def test_cluster_page_shows_three_brokers_up(control_room, page, cluster_settings, shots):
    page.goto(control_room)
    expect(page.get_by_text("Brokers up")).to_be_visible(timeout=30_000)
    expect(page.get_by_text("3 / 3")).to_be_visible(timeout=30_000)
    controller = get_status(cluster_settings).controller
    expect(page.get_by_text(f"node {controller}").first).to_be_visible()
    # st.dataframe draws on a canvas; its cells are mirrored in an accessible grid.
    cells = page.locator("td[role=gridcell]")
    expect(cells.filter(has_text="rtml-probe").first).to_be_attached()
    expect(cells.filter(has_text="UP")).to_have_count(3)
    shots.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(shots / "cluster.png"), full_page=True)
    assert (shots / "cluster.png").stat().st_size > 10_000
