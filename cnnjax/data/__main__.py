"""`python -m cnnjax.data import|info ...`: the `cnnjax data` commands (`cnnjax.cli.data_commands`)."""
import sys

from cnnjax.cli.data_commands import main

sys.exit(main())
