"""Producer and consumer patterns of week 1, as functions the notebook calls and measures."""
