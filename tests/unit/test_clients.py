"""Client helpers without a broker: an unreachable cluster is one sentence, not a stack trace."""

import pytest
from confluent_kafka import Consumer

from rtml.clients import QUIET, partitions_of
from rtml.config import Settings
from rtml.errors import RtmlError
from rtml.model.update import ModelError


def test_partitions_of_an_unreachable_cluster_names_it_in_the_callers_error(tmp_path):
    # Port 1 is never a Kafka broker here: connection refused at once.
    settings = Settings.from_env(
        {"RTML_HOME": str(tmp_path), "RTML_BOOTSTRAP_SERVERS": "127.0.0.1:1"}
    )
    consumer = Consumer({**settings.client_config(group_id="t"), "logger": QUIET})
    try:
        with pytest.raises(ModelError, match=r"Cannot read topic features at 127\.0\.0\.1:1"):
            partitions_of(consumer, settings, "features", ModelError, timeout=1)
        with pytest.raises(RtmlError, match="is the cluster up"):
            partitions_of(consumer, settings, "features", timeout=1)
    finally:
        consumer.close()
