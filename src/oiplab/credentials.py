"""Credentials stay in the environment. Every URI the project prints, logs or writes is shown
without its user-info (`redact`); the user-info of an http(s) tracking URI is handed to MLflow's
client through MLflow's own variables, MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD
(`login`), so the URI MLflow holds, and puts in its messages, has none."""

from __future__ import annotations

import os
import re
from urllib.parse import unquote, urlsplit, urlunsplit

USERNAME, PASSWORD = "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"
# `scheme://user:password@` up to the authority's last `@` (a password may hold a raw `@`); the
# authority ends at `/`, `?`, `#` or a space, so an `@` in a path or a query is not user-info.
_USER_INFO = re.compile(r"\b([A-Za-z][A-Za-z0-9+.\-]*://)[^\s/?#]*@")


def redact(text: str) -> str:
    """`text` (a URI, or a message holding URIs) with the user-info of every URI removed."""
    return _USER_INFO.sub(r"\1", text)


def has_password(uri: str) -> bool:
    """Whether `uri` carries a password in its user-info."""
    match = _USER_INFO.search(uri)
    return match is not None and ":" in match.group(0)[len(match.group(1)) : -1]


def login(uri: str) -> str:
    """`uri` without user-info, for MLflow's client: an http(s) URI's user name and password
    (percent-decoded) go to MLFLOW_TRACKING_USERNAME / MLFLOW_TRACKING_PASSWORD, which MLflow
    sends as basic auth. Other URIs (a database's) are returned as given: their driver needs
    the user-info, and they are shown through `redact`."""
    parts = urlsplit(uri)
    if parts.scheme not in ("http", "https") or "@" not in parts.netloc:
        return uri
    user_info, _, host = parts.netloc.rpartition("@")
    user, colon, password = user_info.partition(":")
    if user:
        os.environ[USERNAME] = unquote(user)
    if colon:
        os.environ[PASSWORD] = unquote(password)
    return urlunsplit(parts._replace(netloc=host))
