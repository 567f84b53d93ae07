"""The pure parts of the peer comparison: the equality rule and its sentences, the build's
cache key, the Java client settings, and the slim Quix app's window step."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from rtml.features.batch import batch_features
from rtml.peers.compare import COUNT, MEAN, PeerError, compare
from rtml.peers.quix import window_step
from rtml.peers.streams import java_client_config, properties_text, prune_builds, source_digest


def _frame(ids, counts, means) -> pd.DataFrame:
    return pd.DataFrame({"transaction_id": ids, COUNT: counts, MEAN: means})


REFERENCE = _frame([1, 2, 3], [1, 2, 1], [10.0, 15.0, 7.5]).set_index("transaction_id")


def test_equal_outputs_pass_and_replayed_duplicates_are_checked_too() -> None:
    peer = _frame([3, 1, 2, 2], [1, 1, 2, 2], [7.5, 10.0, 15.0 + 1e-12, 15.0])
    result = compare(peer, REFERENCE)
    assert (result.transactions, result.records) == (3, 4)
    assert 0 < result.max_mean_gap < 1e-9
    assert "All 3 transactions agree" in result.line()


@pytest.mark.parametrize(
    ("peer", "sentence"),
    [
        (_frame([1, 3], [1, 1], [10.0, 7.5]), "Transaction 2 has no record from the peer"),
        (_frame([1, 2, 3, 9], [1, 2, 1, 1], [10.0, 15.0, 7.5, 1.0]), "wrote transaction 9"),
        (_frame([1, 2, 3], [1, 3, 1], [10.0, 15.0, 7.5]), "Transaction 2 differs: .* count 3"),
        (_frame([1, 2, 3], [1, 2, 1], [10.0, 15.0, 7.5001]), "Transaction 3 differs"),
        # A replayed duplicate that disagrees with its first run is a difference too.
        (_frame([1, 2, 3, 1], [1, 2, 1, 2], [10.0, 15.0, 7.5, 10.0]), "Transaction 1 differs"),
    ],
)
def test_the_first_difference_is_named_in_one_sentence(peer, sentence) -> None:
    with pytest.raises(PeerError, match=sentence):
        compare(peer, REFERENCE)


def test_a_frame_without_the_feature_columns_is_refused() -> None:
    with pytest.raises(PeerError, match="lacks the column"):
        compare(pd.DataFrame({"transaction_id": [1]}), REFERENCE)


def test_the_cache_key_follows_every_byte_and_name_of_the_build_inputs(tmp_path) -> None:
    pom, src = tmp_path / "pom.xml", tmp_path / "A.java"
    pom.write_text("<project/>")
    src.write_text("class A {}")
    first = source_digest([pom, src], tmp_path)
    assert source_digest([src, pom], tmp_path) == first, "order of listing does not matter"
    src.write_text("class A { }")
    assert source_digest([pom, src], tmp_path) != first
    src.write_text("class A {}")
    src.rename(tmp_path / "B.java")
    assert source_digest([pom, tmp_path / "B.java"], tmp_path) != first


def test_a_new_build_replaces_the_older_ones_and_nothing_else(tmp_path) -> None:
    for name in ("streams-peer-aaa", "streams-peer-bbb", "0123abcd"):
        (tmp_path / name).mkdir()
    assert prune_builds(tmp_path / "streams-peer-bbb") == [tmp_path / "streams-peer-aaa"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["0123abcd", "streams-peer-bbb"]


def test_sasl_and_tls_settings_become_java_client_properties() -> None:
    assert java_client_config({}) == {}
    conf = java_client_config(
        {
            "security.protocol": "SASL_SSL",
            "sasl.mechanism": "SCRAM-SHA-512",
            "sasl.username": "alice",
            "sasl.password": 'p"w',
            "ssl.ca.location": "ca.pem",
        }
    )
    assert conf["security.protocol"] == "SASL_SSL"
    assert conf["sasl.jaas.config"] == (
        "org.apache.kafka.common.security.scram.ScramLoginModule required "
        'username="alice" password="p\\"w";'
    )
    assert (conf["ssl.truststore.type"], conf["ssl.truststore.location"]) == ("PEM", "ca.pem")
    plain = java_client_config({"sasl.mechanism": "PLAIN", "sasl.username": "u"})
    assert plain["sasl.jaas.config"].startswith("org.apache.kafka.common.security.plain.")


def test_properties_escape_what_java_would_read_otherwise() -> None:
    text = properties_text({"b": "x=y:z\\w", "a": "1"})
    assert text == "a=1\nb=x\\=y\\:z\\\\w\n"


def test_the_slim_quix_step_equals_the_batch_reference() -> None:
    rng = np.random.default_rng(3)
    n = 400
    day = 86_400_000
    txs = pd.DataFrame(
        {
            "transaction_id": np.arange(n),
            "event_time_ms": np.sort(rng.integers(0, 20 * day, n)),
            "customer_id": rng.integers(0, 4, n),
            "terminal_id": 0,
            "tx_amount": rng.uniform(0, 200, n).round(2),
        }
    )
    no_labels = pd.DataFrame(
        {"terminal_id": [], "event_time_ms": [], "label_time_ms": [], "tx_fraud": []}
    ).astype("int64")
    reference = batch_features(txs, no_labels)
    state: dict[int, tuple[list[int], list[float]]] = {}
    rows = []
    for tx in txs.itertuples():
        times, amounts = state.setdefault(tx.customer_id, ([], []))
        record = {
            "transaction_id": tx.transaction_id,
            "customer_id": tx.customer_id,
            "tx_datetime": int(tx.event_time_ms),
            "tx_amount": tx.tx_amount,
        }
        rows.append(window_step(record, times, amounts))
    assert compare(pd.DataFrame(rows), reference).transactions == n
    # State keeps no more than the window and its grace period needs.
    assert all(max(t) - min(t) <= 7 * day + 60_000 for t, _ in state.values() if t)
    # A transaction later than the grace period gets no features, as in the feature app.
    times, amounts = state[0]
    late = {"transaction_id": n, "customer_id": 0, "tx_datetime": times[-1] - 60_001}
    assert window_step({**late, "tx_amount": 1.0}, times, amounts) is None
