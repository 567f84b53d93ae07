"""Week 2 exercises."""
