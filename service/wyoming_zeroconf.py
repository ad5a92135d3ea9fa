"""The Wyoming server announced on the local network (zeroconf / mDNS), so Home Assistant finds it.

Optional: ``pip install 'parawave[zeroconf]'`` and the setting ``wyoming_zeroconf``. The service type
is Wyoming's (``_wyoming._tcp.local.``); a wildcard bind is announced on the address this host sends
multicast from.
"""

from __future__ import annotations

import logging
import socket
from urllib.parse import urlparse

from service import __version__

log = logging.getLogger(__name__)

ZEROCONF_TYPE = "_wyoming._tcp.local."


class Announcement:
    """One server's announcement: :meth:`announce` at start, :meth:`withdraw` at shutdown."""

    def __init__(self) -> None:
        self._zeroconf = None
        self._info = None

    async def announce(self, uri: str, name: str | None) -> None:
        """Announce the server at ``uri`` (tcp://host:port) as ``name`` [default parawave-HOSTNAME]."""
        from zeroconf import IPVersion
        from zeroconf.asyncio import AsyncServiceInfo, AsyncZeroconf

        parsed = urlparse(uri)
        if parsed.scheme != "tcp":
            log.warning("Wyoming: zeroconf needs a tcp:// URI, not %s: not announced", uri)
            return
        host = parsed.hostname or ""
        if host in ("0.0.0.0", "", "::"):
            host = outward_address()
        name = name or f"parawave-{socket.gethostname()}"
        info = AsyncServiceInfo(
            ZEROCONF_TYPE,
            f"{name}.{ZEROCONF_TYPE}",
            addresses=[socket.inet_aton(host)],
            port=parsed.port,
            properties={"version": __version__},
        )
        zc = AsyncZeroconf(ip_version=IPVersion.V4Only)
        await zc.async_register_service(info)
        self._zeroconf, self._info = zc, info
        log.info("Wyoming: announced as %s on %s:%s (zeroconf)", name, host, parsed.port)

    async def withdraw(self) -> None:
        if self._zeroconf is not None:
            await self._zeroconf.async_unregister_service(self._info)
            await self._zeroconf.async_close()
            self._zeroconf = None


def outward_address() -> str:
    """The IPv4 address this host sends multicast from (what a wildcard bind is reachable on)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("224.0.0.251", 5353))  # mDNS; UDP connect sends nothing
            return s.getsockname()[0]
        except OSError:
            return "127.0.0.1"
