"""RabbitMQ beside Kafka: a local broker from Debian's package, started and stopped by rtml."""

from rtml.rabbit.server import RabbitError, RabbitServer

__all__ = ["RabbitError", "RabbitServer"]
