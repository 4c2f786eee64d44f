"""``python -m chunkseg`` runs the command line."""

import sys

from chunkseg.cli import main

sys.exit(main())
