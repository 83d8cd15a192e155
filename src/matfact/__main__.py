"""``python -m matfact``: the same as the ``matfact`` command (see :mod:`matfact.cli`)."""

import sys

from matfact.cli import main

if __name__ == "__main__":
    sys.exit(main())
