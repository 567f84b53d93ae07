"""Models: trained on the replayed log, published as versions on `model-updates`, scored."""
