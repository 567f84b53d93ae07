"""Week 2: the real-time feature application (Quix Streams) and its pandas batch twin."""
