"""Where `callback_url` may point, and the POST that delivers a job's state to it.

A callback makes the server send a request to an address the client chose, which is the textbook
server-side request forgery (OWASP SSRF Prevention Cheat Sheet): without a check, a key holder could make
kinema POST to 127.0.0.1, the cloud metadata service at 169.254.169.254 or hosts on the private network.
So a callback URL must be http(s), and every address its host resolves to must be a public unicast one
(IPv4 or IPv6; an IPv4 address embedded in IPv6 as mapped, 6to4 or Teredo is checked as itself). The check
runs at submit time (400 invalid_callback_url) and again before each POST, because DNS can change in
between (rebinding); the POST then goes to the very address that was checked (the URL's host is replaced
by it, with the original Host header and TLS server name), and redirects are not followed.
`kinema serve --allow-private-callbacks` lifts the address check for local development.
"""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit

import httpx

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class UnsafeCallback(ValueError):
    """A callback URL kinema will not call; the message is one line that says why."""


def address_problem(ip: IPAddress) -> str | None:
    """Why this address is not a public unicast one (None when it is)."""
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = ip.ipv4_mapped or ip.sixtofour or (ip.teredo[1] if ip.teredo else None)
        if embedded is not None:
            return address_problem(embedded)
    for name in ("unspecified", "loopback", "link_local", "multicast", "private", "reserved"):
        if getattr(ip, f"is_{name}"):
            return name.replace("_", "-")
    if not ip.is_global:  # shared address space 100.64/10, documentation ranges, ...
        return "not globally routable"
    return None


def split_url(url: str) -> tuple[str, str, int]:
    """(scheme, host, port) of an http(s) URL, or UnsafeCallback."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        raise UnsafeCallback("callback_url is not a valid URL") from None
    if parts.scheme not in ("http", "https"):
        raise UnsafeCallback("callback_url must be an http(s) URL")
    if not parts.hostname:
        raise UnsafeCallback("callback_url has no host")
    return parts.scheme, parts.hostname, port or (443 if parts.scheme == "https" else 80)


def resolve(host: str, port: int) -> list[IPAddress]:
    """Every address `host` resolves to (an IP literal is itself)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError, OSError):
        raise UnsafeCallback(f"callback_url: the host {host!r} does not resolve") from None
    out: list[IPAddress] = []
    for info in infos:
        ip = ipaddress.ip_address(str(info[4][0]).split("%")[0])  # drop an IPv6 zone id
        if ip not in out:
            out.append(ip)
    if not out:
        raise UnsafeCallback(f"callback_url: the host {host!r} does not resolve")
    return out


def check_callback_url(url: str, allow_private: bool = False) -> IPAddress:
    """The address to send the callback to, once every address of the URL's host passed the check."""
    _, host, port = split_url(url)
    addresses = resolve(host, port)
    if not allow_private:
        for ip in addresses:
            problem = address_problem(ip)
            if problem is not None:
                raise UnsafeCallback(f"callback_url: {host} resolves to {ip} ({problem}); give a public address")
    return addresses[0]


def post_callback(url: str, body: str, allow_private: bool = False, timeout: float = 5) -> int:
    """POST body (JSON) to url through the address checked just now; the HTTP status. Raises UnsafeCallback
    when the host now resolves somewhere it may not, httpx.HTTPError when the POST fails."""
    ip = check_callback_url(url, allow_private)
    target = httpx.URL(url)
    host_header = target.netloc.decode("ascii").rsplit("@", 1)[-1]  # host[:port], as the client wrote it
    pinned = target.copy_with(host=str(ip))
    headers = {"content-type": "application/json", "host": host_header}
    extensions = {"sni_hostname": target.host} if target.scheme == "https" else {}
    with httpx.Client(timeout=timeout, follow_redirects=False, trust_env=False) as http:
        request = http.build_request("POST", pinned, content=body, headers=headers, extensions=extensions)
        return http.send(request).status_code
