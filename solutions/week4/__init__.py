"""Week 4 reference answers."""
