"""The lightvm suite's session fixtures (the shared guest-image cache, the apt arch check), reused here."""

from tests.lightvm.conftest import apt_arch, guest_cache  # noqa: F401
