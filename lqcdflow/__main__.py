"""`python -m lqcdflow` is the `lqcdflow` command."""

from lqcdflow.cli import main

raise SystemExit(main())
