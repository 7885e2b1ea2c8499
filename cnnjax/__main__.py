"""`python -m cnnjax ...` runs the `cnnjax` command line."""
import sys

from cnnjax.cli import main

sys.exit(main())
