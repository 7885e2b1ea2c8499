import sys

from cnnjax.data.cli import main

sys.exit(main())
