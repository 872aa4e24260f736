"""``python -m cloud_hub``: the ``cloud-hub`` command."""

import sys

from .cli import main

sys.exit(main())
