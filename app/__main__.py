"""`python -m app`: the operator command line (app.cli)."""

from app.cli import main

raise SystemExit(main())
