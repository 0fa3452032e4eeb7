import sys

from albsnn.cli import main

sys.exit(main())
