"""Week 1 reference answers."""
