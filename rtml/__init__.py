"""rtml: a real-time ML system on Apache Kafka (card-fraud detection), built as a course."""

__version__ = "0.1.0"
