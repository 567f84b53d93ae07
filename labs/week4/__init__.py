"""Week 4 exercises."""
