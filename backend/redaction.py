"""Text made safe to show wherever it goes (logs, messages, printed configuration).

Invariant: `without_url_credentials` leaves no URL's `user:password@` part in a text, whatever
else the text holds; everything else is kept as it is.
"""

import re

MASK = "***"
# scheme://userinfo@ : the userinfo may hold any character but the ones that end an authority.
_URL_USERINFO = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)[^/?#\s]*@")


def without_url_credentials(text: str) -> str:
    """text with every URL's userinfo replaced by ***: `https://***@host/path`."""
    return _URL_USERINFO.sub(rf"\g<scheme>{MASK}@", text) if "://" in text else text
