"""``python -m streamd`` runs the command line."""

from streamd.cli import main

raise SystemExit(main())
