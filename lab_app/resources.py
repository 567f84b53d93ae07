"""Clients shared by every page and rerun, created once per process (st.cache_resource)."""

import streamlit as st
from confluent_kafka.admin import AdminClient

from rtml.chaos.job import ChaosJob
from rtml.clients import admin
from rtml.config import Settings
from rtml.errors import RtmlError


def settings() -> Settings:
    """RTML_* settings (cheap to read); a bad value shows its one sentence and stops the page."""
    try:
        return Settings.from_env()
    except RtmlError as exc:
        st.error(str(exc))
        st.stop()


@st.cache_resource
def admin_client(cfg: Settings) -> AdminClient:
    """One admin client per cluster (a client holds connections and threads)."""
    return admin(cfg, timeout=3)


@st.cache_resource
def chaos_job(cluster_dir: str) -> ChaosJob:
    """One chaos scenario at a time per cluster, shared by every browser tab: two runs at
    once would kill the same brokers and blur both verdicts."""
    return ChaosJob()
