"""`python -m lib`: lib/cli.py. Ctrl-C is one line and exit 130 (128 + SIGINT), as a shell reports it."""

import sys

from lib.cli import main

try:
    sys.exit(main())
except KeyboardInterrupt:
    print("interrupted (Ctrl-C): nothing was written", file=sys.stderr)
    sys.exit(130)
