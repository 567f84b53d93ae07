"""RabbitMQ beside Kafka on the same transactions: a real broker (Debian's package, started by
rtml on free ports) and the live test cluster.

One run of each side, shared by the tests: RabbitMQ with two competing workers, one SIGKILLed
mid-run; Kafka with a consumer group of two, then reset and read again.
"""

from __future__ import annotations

import pika
import psutil
import pytest

from rtml.compare.rabbit import compare, table
from rtml.rabbit import RabbitServer

N = 2000
KILL_AFTER = 200


@pytest.fixture(scope="module")
def rabbit(cluster_settings):
    server = RabbitServer(cluster_settings)
    try:
        server.up()
        yield server
    finally:
        server.down(wipe=True)
    assert not server.alive()


@pytest.fixture(scope="module")
def results(rabbit, cluster_settings):
    # 1 ms of work per message, so the kill lands while both workers are busy.
    return compare(cluster_settings, rabbit.port, N, kill_after=KILL_AFTER, work_ms=1.0)


def test_the_broker_is_ours_and_listens_on_loopback_only(rabbit) -> None:
    proc = rabbit.process.process()
    assert proc is not None
    beams = [p for p in proc.children(recursive=True) if "beam" in p.name()]
    assert beams, "the start script runs the Erlang VM as its child"
    listening = [
        c.laddr for b in beams for c in b.net_connections("tcp") if c.status == psutil.CONN_LISTEN
    ]
    assert rabbit.ports.amqp in {a.port for a in listening}
    assert {a.ip for a in listening} == {"127.0.0.1"}
    assert str(rabbit.dir) in " ".join(beams[0].cmdline()), "its own Mnesia and log folders"


def test_the_killed_consumer_s_messages_come_again_flagged_and_nothing_is_lost(results) -> None:
    rabbit, _kafka = results
    assert rabbit.killed == "A" and rabbit.killed_after >= KILL_AFTER
    assert rabbit.killed_after < N, "the kill came before worker A ran out of messages"
    assert rabbit.lost == 0
    # Its prefetched, unacknowledged messages went to the survivor with the flag set.
    assert rabbit.redelivered_flagged > 0
    assert rabbit.unique == N


def test_kafka_keeps_per_key_order_and_competing_consumers_do_not(results) -> None:
    rabbit, kafka = results
    assert kafka.lost == 0 and kafka.duplicates == 0
    assert kafka.out_of_order == 0, "one key, one partition, one consumer at a time"
    assert rabbit.out_of_order > 0, "two workers share each customer's messages"


def test_kafka_replays_and_an_acked_rabbitmq_message_is_gone(results, rabbit) -> None:
    rabbit_result, kafka = results
    assert kafka.replayed == N
    assert rabbit_result.replayed == 0
    # And directly: a queue whose messages were acked has nothing to give a new consumer.
    conn = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", rabbit.port))
    try:
        channel = conn.channel()
        channel.queue_declare("replay-check", durable=True)
        channel.confirm_delivery()
        channel.basic_publish("", "replay-check", b"once")
        method, _props, body = channel.basic_get("replay-check")
        assert body == b"once"
        channel.basic_ack(method.delivery_tag)
        assert channel.basic_get("replay-check") == (None, None, None)
        assert channel.queue_declare("replay-check", passive=True).method.message_count == 0
    finally:
        conn.close()


def test_throughput_is_measured_side_by_side(results) -> None:
    rabbit, kafka = results
    for side in (rabbit, kafka):
        assert 0 < side.publish_rate < float("inf")
        assert 0 < side.consume_rate < float("inf")
    text = table(rabbit, kafka)
    assert "RabbitMQ work queue" in text and "read again after processing" in text
