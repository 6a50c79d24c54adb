"""``python -m lifecycle run|check TARGET`` (see lifecycle/cli.py)."""

import sys

from .cli import main

sys.exit(main())
