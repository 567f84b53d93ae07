"""The online prediction service: features in, one scored decision per transaction out."""
