"""``python -m edge_agent``: the ``edge-agent`` command."""

import sys

from .cli import main

if __name__ == "__main__":  # worker processes (drop imports) import this as __mp_main__
    sys.exit(main())
