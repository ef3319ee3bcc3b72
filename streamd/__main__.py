"""``python -m streamd`` runs the command line."""

from streamd.console import entry

entry()
