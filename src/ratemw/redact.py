"""Credentials out of URLs: the one place a URL is turned into text for people.

Publish targets, rules sources, the control plane's database and the limiters' Redis
are URLs that may carry a secret: a password (``redis://:PASSWORD@host``,
``postgresql://user:PASSWORD@host/db``), a user part without a password (a token used
as a user name), or a query parameter (``consul://…?token=T``, ``?password=``,
``?access_token=``). :func:`redact` masks all of them. Every message, log line, audit
entry, HTTP response and CLI line that names such a URL shows ``redact(url)``, never the
URL. :func:`scrub` is the second line: it masks the secrets of some URLs in any text,
such as an exception message from a client library that echoed them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from urllib.parse import parse_qsl, quote, unquote, urlsplit

__all__ = ["MASK", "redact", "scrub", "secrets_of"]

MASK = "***"
# Query parameters whose values are credentials (case-insensitive, anywhere in the name:
# token, access_token, X-Consul-Token, password, sentinel_password, api_key, secret ...).
_SECRET_PARAM = re.compile(
    r"token|passw|pwd|secret|credential|auth|api[-_]?key|^pass$|^sig(nature)?$", re.IGNORECASE
)
# Shorter secrets cannot be masked inside free text without mangling it (a password
# "0" is in every number): a text holding one is withheld whole by scrub().
_MIN_SCRUB = 4


def _is_secret_param(name: str) -> bool:
    return bool(_SECRET_PARAM.search(unquote(name)))


def redact(url: str) -> str:
    """``url`` with every credential replaced by ``***``.

    ``user:password@`` becomes ``user:***@``; a user part without a password becomes
    ``***@`` (it may be a token); the values of query parameters such as ``token``,
    ``password``, ``access_token`` or ``api_key`` become ``***``; a fragment is
    dropped. Text that does not parse as a URL is returned masked whole unless it
    holds neither ``@`` nor ``=`` (a plain path). Never raises.
    """
    try:
        parts = urlsplit(url)
        netloc = parts.netloc
        if "@" in netloc:
            userinfo, _, hosts = netloc.rpartition("@")
            user, colon, _ = userinfo.partition(":")
            netloc = f"{user}:{MASK}@{hosts}" if colon else f"{MASK}@{hosts}"
        items = []
        for item in parts.query.split("&"):
            if not item:
                continue
            name, sep, _ = item.partition("=")
            items.append(f"{name}={MASK}" if sep and _is_secret_param(name) else item)
        query = "&".join(items)
        if netloc == parts.netloc and query == parts.query and not parts.fragment:
            return url  # as written: geturl() would rewrite sqlite:/// as sqlite:/
        return parts._replace(netloc=netloc, query=query, fragment="").geturl()
    except ValueError:  # an invalid IPv6 netloc, a bad port: nothing to parse from
        return url if "@" not in url and "=" not in url else MASK


def secrets_of(url: str) -> frozenset[str]:
    """The credentials in ``url``, as written and percent-decoded (see :func:`redact`)."""
    found: set[str] = set()
    try:
        parts = urlsplit(url)
        if "@" in parts.netloc:
            userinfo = parts.netloc.rpartition("@")[0]
            user, colon, password = userinfo.partition(":")
            found.update((password,) if colon else (user,))
        found.update(v for k, v in parse_qsl(parts.query) if _is_secret_param(k))
        found.update(
            v for k, _, v in (i.partition("=") for i in parts.query.split("&"))
            if _is_secret_param(k)
        )  # fmt: skip
    except ValueError:
        found.add(url)
    spelled = {s for s in found if s} | {unquote(s) for s in found if s}
    return frozenset(spelled | {quote(s, safe="") for s in spelled})


def scrub(text: str, urls: Iterable[str]) -> str:
    """``text`` with the credentials of ``urls`` masked, and each URL itself redacted.

    A text holding a credential too short to mask safely is withheld whole.
    """
    for url in urls:
        if url and url in text:
            text = text.replace(url, redact(url))
        for secret in sorted(secrets_of(url), key=len, reverse=True):
            if secret not in text:
                continue
            if len(secret) < _MIN_SCRUB:
                return f"(withheld: the message held a credential of {redact(url)})"
            text = text.replace(secret, MASK)
    return text
