"""Week 3 reference answers."""
