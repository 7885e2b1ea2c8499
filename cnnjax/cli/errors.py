"""How the command line reports a mistake: one line ``<command>: error: ...`` on stderr and an exit status, never a
traceback, for `cnnjax`, `python -m cnnjax.data` and `python -m cnnjax.viz` alike."""
from __future__ import annotations

import sys


class UsageError(ValueError):
    """A mistake in the command line's arguments, found before any work is done: reported as one line, exit 2."""


def run_command(args, name: str) -> int:
    """``args.func(args)`` with a user's mistakes reported as one line on stderr, ``{name}: error: ...``, and an
    exit status (2: a usage or data error, 3: a non-finite loss, 130: interrupted) instead of a traceback. Shared
    by `cnnjax`, `python -m cnnjax.data` and `python -m cnnjax.viz`."""
    from cnnjax.data import DataNotFoundError
    from cnnjax.train import CheckpointMismatchError, NonFiniteLossError
    from cnnjax.train.checkpoint import NonFiniteStateError

    prefix = f"{name}: error:"
    try:
        return args.func(args)
    except (NonFiniteLossError, NonFiniteStateError) as e:
        print(f"{prefix} {e}", file=sys.stderr)
        return 3
    except (UsageError, CheckpointMismatchError, ValueError, TypeError, DataNotFoundError) as e:
        print(f"{prefix} {e}", file=sys.stderr)
        return 2
    except OSError as e:           # a file named on the command line that is missing, unreadable or unwritable
        print(f"{prefix} {e.filename!r}: {e.strerror}" if e.filename and e.strerror else f"{prefix} {e}",
              file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"\n{name}: interrupted", file=sys.stderr)
        return 130
