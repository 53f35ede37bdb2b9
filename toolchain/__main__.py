import sys

from toolchain.engine import main

sys.exit(main())
