"""The expiry time of a PEM certificate, read from its DER encoding (pure; no crypto library).

Only the path to ``tbsCertificate.validity.notAfter`` is walked (RFC 5280 §4.1): the outer
``Certificate`` SEQUENCE, ``tbsCertificate`` SEQUENCE, the optional ``[0]`` version, the serial
number, the signature algorithm, the issuer, then ``validity`` = SEQUENCE { notBefore, notAfter },
each a UTCTime (``YYMMDDHHMMSSZ``; years 50-99 are 19xx) or a GeneralizedTime
(``YYYYMMDDHHMMSSZ``).
"""

from __future__ import annotations

import base64
import binascii
import datetime
import re

_PEM = re.compile(rb"-----BEGIN CERTIFICATE-----(.+?)-----END CERTIFICATE-----", re.DOTALL)
_SEQUENCE, _INTEGER, _VERSION = 0x30, 0x02, 0xA0
_UTC_TIME, _GENERALIZED_TIME = 0x17, 0x18


def first_certificate(pem: bytes) -> bytes:
    """The DER bytes of the first certificate in a PEM chain (the leaf)."""
    found = _PEM.search(pem)
    if found is None:
        raise ValueError("no PEM certificate")
    try:
        return base64.b64decode(b"".join(found.group(1).split()), validate=True)
    except binascii.Error as exc:
        raise ValueError(f"bad base64 in the PEM certificate: {exc}") from None


def _element(der: bytes, pos: int) -> tuple[int, int, int]:
    """(tag, start, end) of the DER element at ``pos``; its value is ``der[start:end]``."""
    if pos + 2 > len(der):
        raise ValueError("truncated DER")
    tag, first = der[pos], der[pos + 1]
    if first < 0x80:
        start, length = pos + 2, first
    else:
        count = first & 0x7F
        if not 0 < count <= 4 or pos + 2 + count > len(der):
            raise ValueError("bad DER length")
        start = pos + 2 + count
        length = int.from_bytes(der[pos + 2 : start], "big")
    end = start + length
    if end > len(der):
        raise ValueError("truncated DER")
    return tag, start, end


def _time(tag: int, text: bytes) -> float:
    value = text.decode("ascii")
    if tag == _UTC_TIME:
        parsed = datetime.datetime.strptime(value, "%y%m%d%H%M%SZ")
        if parsed.year >= 2050:  # RFC 5280: YY >= 50 means 19YY
            parsed = parsed.replace(year=parsed.year - 100)
    elif tag == _GENERALIZED_TIME:
        parsed = datetime.datetime.strptime(value, "%Y%m%d%H%M%SZ")
    else:
        raise ValueError(f"unexpected DER tag {tag:#x} for a time")
    return parsed.replace(tzinfo=datetime.UTC).timestamp()


def not_after(pem: bytes) -> float:
    """The notAfter of the first certificate in ``pem``, as a Unix timestamp (ValueError when
    it is not a parsable certificate)."""
    der = first_certificate(pem)
    tag, start, _end = _element(der, 0)
    if tag != _SEQUENCE:
        raise ValueError("not a certificate")
    tag, pos, _end = _element(der, start)  # tbsCertificate
    if tag != _SEQUENCE:
        raise ValueError("not a certificate")
    tag, _start, end = _element(der, pos)
    if tag == _VERSION:
        tag, _start, end = _element(der, end)
    if tag != _INTEGER:
        raise ValueError("not a certificate (no serial number)")
    for _ in range(2):  # signature algorithm, issuer
        tag, _start, end = _element(der, end)
    tag, start, _end = _element(der, end)  # validity
    if tag != _SEQUENCE:
        raise ValueError("not a certificate (no validity)")
    _tag, _start, end = _element(der, start)  # notBefore
    tag, start, end = _element(der, end)  # notAfter
    return _time(tag, der[start:end])
