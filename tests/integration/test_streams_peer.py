"""The Kafka Streams peer on the live cluster: built by Maven (cached), run as a JVM rtml
owns, and equal to the batch reference for every transaction of a replayed history."""

from __future__ import annotations

import uuid

import pytest
from confluent_kafka.admin import ConfigResource

from rtml.cli import main
from rtml.clients import admin
from rtml.features.batch import batch_features
from rtml.features.runner import count_records, fresh_topics
from rtml.peers.compare import COUNT, MEAN, PeerError, compare
from rtml.peers.streams import (
    JAR,
    StreamsPeer,
    batch_reference,
    build_dir,
    ensure_built,
    new_app_id,
    read_peer,
)
from rtml.poll import until
from rtml.schemas import register_all
from rtml.simulate import SimulationParams, simulate
from rtml.simulate.producer import replay

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def history(cluster_settings):
    """About 2,200 transactions over 20 days (the 7-day window fills) in a fresh topic."""
    settings = cluster_settings
    fresh_topics(settings, ["transactions"])
    register_all(settings)
    sim = simulate(SimulationParams(n_customers=80, n_terminals=160, n_days=20, seed=11))
    report = replay(settings, sim, progress=False)
    assert report.ok
    return settings, sim


def test_the_peer_equals_the_batch_reference_for_every_transaction(history) -> None:
    settings, sim = history
    n = len(sim.transactions)
    folder = ensure_built(settings)
    assert folder == build_dir(settings) and (folder / JAR).is_file()
    built_at = (folder / ".complete").stat().st_mtime_ns
    assert ensure_built(settings) == folder
    assert (folder / ".complete").stat().st_mtime_ns == built_at, "not built a second time"

    peer = StreamsPeer(settings, app_id=new_app_id(), output=f"peer-{uuid.uuid4().hex[:8]}")
    try:
        # As a learner runs it: the CLI starts the JVM in the background and returns.
        assert (
            main(["peer", "streams", "run", "--app-id", peer.app_id, "--output", peer.output]) == 0
        )
        assert peer.running()
        until(lambda: count_records(settings, peer.output) >= n, 120, f"{n} peer records")
        # Records keep their 2018 event times: the output must not expire them by age.
        client = admin(settings, timeout=10)
        resource = ConfigResource(ConfigResource.Type.TOPIC, peer.output)
        configs = client.describe_configs([resource])[resource].result(timeout=30)
        assert configs["retention.ms"].value == "-1"
        # State lives in a store backed by a changelog topic, replicated like the input.
        topics = client.list_topics(timeout=10).topics
        changelog = topics[f"{peer.app_id}-customer-7d-changelog"]
        assert len(changelog.partitions) == len(topics["transactions"].partitions)
        assert len(changelog.partitions[0].replicas) == len(
            topics["transactions"].partitions[0].replicas
        )
        assert main(["peer", "streams", "stop", "--app-id", peer.app_id]) == 0
        assert not peer.running()
    finally:
        peer.stop()
    assert "processed" in peer.log_tail(), "the punctuation reports progress to the log"

    got = read_peer(settings, peer.output)
    assert len(got) == n, "an uninterrupted run writes each transaction once"
    assert got["transaction_id"].is_unique
    reference = batch_features(sim.transactions, sim.labels)
    result = compare(got, reference)
    assert (result.transactions, result.records) == (n, n)
    assert result.max_mean_gap <= 1e-9
    # Windows really hold more than the current transaction, so the check means something.
    assert got[COUNT].max() > 5
    # The reference rebuilt from the topic is the same one, and so is the CLI's verdict.
    assert compare(got, batch_reference(settings)).transactions == n
    assert main(["peer", "streams", "compare", "--output", peer.output]) == 0

    # One changed mean is found and named.
    bad = got.copy()
    bad.loc[7, MEAN] += 1e-6
    with pytest.raises(PeerError, match=f"Transaction {bad.loc[7, 'transaction_id']} differs"):
        compare(bad, reference)

    deleted = peer.remove()
    assert deleted == [f"{peer.app_id}-customer-7d-changelog"]
    assert not peer.folder.exists()
