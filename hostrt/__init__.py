"""hostrt: run Linux container images natively where the host can, in a light VM where it cannot."""

import sys

__version__ = "0.1.0"

# Every command imports dozens of hostrt modules; compiling them from source each time (as
# happens with PYTHONDONTWRITEBYTECODE set and an editable install, which pip did not compile)
# costs more than a container run. Keep the bytecode cache, as hostrt-runtime does.
sys.dont_write_bytecode = False
