"""Week 2 reference answers."""
