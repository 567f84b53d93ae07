"""Backpressure on the live cluster: a slow gateway makes the consumer pause, not hoard."""

from __future__ import annotations

import uuid

from rtml.cards.delivery import DeliveryOptions, backpressure_demo


def test_a_slow_gateway_turns_into_lag_that_drains_when_it_speeds_up(cluster_settings) -> None:
    options = DeliveryOptions(group=f"test-bp-{uuid.uuid4().hex[:6]}", high=200, low=50)
    # 1,000 records/s against a gateway that sends at most 100/s, then one that keeps up.
    # A fast producer keeps the outcome independent of how busy the machine is.
    result = backpressure_demo(
        cluster_settings, rate=1_000, phases=((10.0, 3.0), (0.0, 1.0)), options=options
    )
    assert result.delivered == result.produced >= 3_000
    assert result.pauses >= 1
    # Memory stays bounded: at most one batch beyond the high-water mark ever waits in it.
    assert result.max_queued <= options.high + options.max_batch
    slow = [s for s in result.samples if s.delay_ms > 0]
    # The backlog went to Kafka instead: more lag than the queue may ever hold ...
    assert max(s.lag for s in slow) > options.high + options.max_batch
    assert any(s.paused for s in slow)
    # ... and drained once the gateway was fast again.
    last = result.samples[-1]
    assert (last.lag, last.queued) == (0, 0) and last.delay_ms == 0
