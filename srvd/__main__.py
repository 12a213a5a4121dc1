import sys

from srvd.cli import main

sys.exit(main())
