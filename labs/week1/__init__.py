"""Week 1 exercises."""
