"""`python -m ganprior_core`: the command line (ganprior_core/cli.py)."""
import sys

from .cli import main

sys.exit(main())
