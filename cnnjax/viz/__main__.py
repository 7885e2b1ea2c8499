"""`python -m cnnjax.viz curves|features|filters ...`: the `cnnjax plot` commands (`cnnjax.cli.plot_commands`)."""
import sys

from cnnjax.cli.plot_commands import main

sys.exit(main())
