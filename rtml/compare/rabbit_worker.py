"""One competing consumer of a RabbitMQ work queue, as its own process so it can be killed.

`python -m rtml.compare.rabbit_worker --port P --queue Q --name A --out FILE` reads the
queue with manual acks and a prefetch window. For each delivery it first writes one JSON
line (name, key, seq, redelivered flag, time) to FILE, then acks: the line is the
"processing", so a worker killed between the two has processed a message the broker will
deliver again, which is the at-least-once duplicate the comparison counts.
"""

from __future__ import annotations

import argparse
import json
import time

import pika


def main(argv: list[str] | None = None) -> int:
    """Consume until killed (or until the queue stays empty for --idle seconds)."""
    p = argparse.ArgumentParser(prog="rtml.compare.rabbit_worker")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--queue", required=True)
    p.add_argument("--name", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--prefetch", type=int, default=50)
    p.add_argument("--work-ms", type=float, default=0.0, help="simulated work per message")
    p.add_argument("--idle", type=float, default=600.0)
    args = p.parse_args(argv)
    conn = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", args.port))
    channel = conn.channel()
    channel.basic_qos(prefetch_count=args.prefetch)
    with open(args.out, "a", buffering=1) as out:
        for method, _props, body in channel.consume(
            args.queue, auto_ack=False, inactivity_timeout=args.idle
        ):
            if method is None:
                break
            record = json.loads(body)
            if args.work_ms:
                time.sleep(args.work_ms / 1000)
            line = {
                "consumer": args.name,
                "key": record["customer_id"],
                "seq": record["seq"],
                "redelivered": bool(method.redelivered),
                "ns": time.time_ns(),
            }
            out.write(json.dumps(line) + "\n")
            channel.basic_ack(method.delivery_tag)
    conn.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
