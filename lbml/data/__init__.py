"""Market data: canonical frames, the embedded synthetic market, importers and validation."""
