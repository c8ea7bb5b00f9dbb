"""Block the network for every Python process started with this folder on PYTHONPATH.

Python imports ``sitecustomize`` at start-up, so putting this folder first on ``PYTHONPATH``
makes a notebook kernel (and the Jupyter server that starts it) unable to reach anything but
this machine: name look-ups and connections to any address other than loopback raise
``OSError``, and each attempt is appended to the file named by ``E2E_NETWORK_LOG``, so a test
sees a download even when the notebook catches the error. Loopback stays open: the kernel talks
to Jupyter over 127.0.0.1. Used by e2e/test_offline_and_memory.py and e2e/test_browser.py.

What it cannot see: native code that opens sockets itself (not Python's ``socket`` module).
"""

from __future__ import annotations

import ipaddress
import os
import socket

_LOG = os.environ.get("E2E_NETWORK_LOG")
_LOOPBACK_NAMES = {None, "", "localhost", "localhost.localdomain", "ip6-localhost"}


def _is_loopback(host: object) -> bool:
    if isinstance(host, bytes):
        host = host.decode(errors="replace")
    if host in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(str(host).split("%")[0]).is_loopback
    except ValueError:
        return False


def _refuse(what: str, host: object) -> None:
    if _LOG:
        with open(_LOG, "a", encoding="utf-8") as log:
            log.write(f"{os.getpid()} {what} {host!r}\n")
    raise OSError(f"network disabled for this test: {what} {host!r} refused (not loopback)")


def _checked_address(sock: socket.socket, address: object) -> None:
    if sock.family in (socket.AF_INET, socket.AF_INET6) and isinstance(address, tuple):
        if not _is_loopback(address[0]):
            _refuse("connect", address[0])


_connect = socket.socket.connect
_connect_ex = socket.socket.connect_ex
_sendto = socket.socket.sendto
_getaddrinfo = socket.getaddrinfo


def _guarded_connect(self, address):
    _checked_address(self, address)
    return _connect(self, address)


def _guarded_connect_ex(self, address):
    _checked_address(self, address)
    return _connect_ex(self, address)


def _guarded_sendto(self, data, *args):
    _checked_address(self, args[-1])
    return _sendto(self, data, *args)


def _guarded_getaddrinfo(host, *args, **kwargs):
    if not _is_loopback(host):
        _refuse("getaddrinfo", host)
    return _getaddrinfo(host, *args, **kwargs)


socket.socket.connect = _guarded_connect
socket.socket.connect_ex = _guarded_connect_ex
socket.socket.sendto = _guarded_sendto
socket.getaddrinfo = _guarded_getaddrinfo
