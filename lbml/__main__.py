import sys

from lbml.cli import main

sys.exit(main())
