"""`python -m shrinknet ...`: the command line, as `shrinknet ...`."""
import sys

from .cli import main

sys.exit(main())
