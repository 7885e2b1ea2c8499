import sys

from cnnjax.viz.cli import main

sys.exit(main())
