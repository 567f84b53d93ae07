"""Reference answers to the exercises in `labs/` (the system's default implementation)."""
