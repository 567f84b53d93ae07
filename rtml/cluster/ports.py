"""Free ports for a throw-away cluster beside the learner's (tests, benchmarks)."""

from __future__ import annotations

import random
import socket

from rtml.cluster.errors import ClusterError


def free_base_port(nodes: int = 3) -> int:
    """A base port with free brokers (base+i), controllers (base+100+i), registry (base+200,
    its health port +1) and Connect (base+300).

    The block lies below Linux's ephemeral range (32768+), so client connections never take
    one of its ports between this check and the cluster's start.
    """
    for _ in range(200):
        base = random.randrange(20000, 32000, 10)
        ports = [base + i for i in range(nodes)] + [base + 100 + i for i in range(nodes)]
        ports += [base + 200, base + 201, base + 300]
        try:
            for port in ports:
                with socket.socket() as sock:
                    sock.bind(("127.0.0.1", port))
        except OSError:
            continue
        return base
    raise ClusterError("No free block of ports was found for a throw-away cluster.")
