"""Week 3 exercises."""
