"""``python -m hosts.worker``."""

import sys

from hosts.worker.main import main

sys.exit(main())
