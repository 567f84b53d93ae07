"""Beyond Kafka: the same system on AWS streaming services, locally against a moto server.

`server` runs moto (AWS's APIs emulated in one local process); `streams` is rtml's one
stream abstraction, with a Kafka and a Kinesis implementation; `pipeline` runs the
simulator's history, rtml's feature code and its scoring code over either; `eventbridge`
routes card events by content, as a rule-based alternative to consumers filtering a topic.
"""
