"""Training and evaluation of streamd's models (imports ``models``, never the daemon's threads)."""
