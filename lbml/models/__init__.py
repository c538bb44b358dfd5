"""Model plugins, training and safe (non-pickle) artifacts."""
