"""Kafka set beside other messaging and streaming tools, on the same transactions."""
