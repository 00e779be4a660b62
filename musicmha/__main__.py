import sys

from musicmha.cli import main

sys.exit(main())
