"""``python -m streamd`` runs the command line."""

try:
    from streamd.cli import entry
except KeyboardInterrupt:  # Ctrl-C before the command line could take it: no traceback
    raise SystemExit(130) from None

entry()
