"""Clients shared by every page and rerun, created once per process (st.cache_resource)."""

import streamlit as st
from confluent_kafka.admin import AdminClient

from rtml.clients import admin
from rtml.config import Settings


def settings() -> Settings:
    """RTML_* settings (cheap to read); a bad value raises ConfigError for the page to show."""
    return Settings.from_env()


@st.cache_resource
def admin_client(cfg: Settings) -> AdminClient:
    """One admin client per cluster (a client holds connections and threads)."""
    return admin(cfg, timeout=3)
