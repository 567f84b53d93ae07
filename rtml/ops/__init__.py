"""Operator tools: inspect and redrive dead-letter queues, reset a consumer group's offsets.

Each tool is a function returning dataclasses (the control room shows them as tables);
`rtml.ops.cli` only prints them.
"""
