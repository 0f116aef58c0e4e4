"""Optional bearer-token authentication of the endpoints that change state.

With a token configured (`--auth-token`, or the environment variable `SPECRL_AUTH_TOKEN`), every
mutating endpoint (`POST /rollout` - it records drafts -, weight updates, flush, snapshot,
restore) needs the header `Authorization: Bearer <token>`; a missing or wrong token is a 401,
checked before the body is read (an unauthenticated client cannot make the server buffer a
4 GiB upload). Read-only endpoints (`GET /health`, `/stats`, `/metrics`) stay open. Tokens are
compared in constant time.
"""

from __future__ import annotations

import hmac
import os

from specrl_sglang.server.errors import ApiError

TOKEN_ENV = "SPECRL_AUTH_TOKEN"
MIN_TOKEN_LEN = 16


def check_token(token: str, what: str = "--auth-token") -> str:
    """`token` if usable as a bearer token (printable ASCII, no spaces, >= MIN_TOKEN_LEN chars)."""
    if len(token) < MIN_TOKEN_LEN or not token.isascii() or not token.isprintable() or " " in token:
        raise ValueError(f"{what} must be at least {MIN_TOKEN_LEN} printable ASCII characters without spaces")
    return token


def token_from_env() -> str | None:
    value = os.environ.get(TOKEN_ENV)
    return check_token(value, TOKEN_ENV) if value else None


class BearerAuth:
    """Checks the Authorization header of a request; `token=None` lets every request through."""

    def __init__(self, token: str | None) -> None:
        self._token = None if token is None else check_token(token).encode()

    @property
    def enabled(self) -> bool:
        return self._token is not None

    def check(self, authorization: str | None) -> None:
        """ApiError(401) unless `authorization` is `Bearer <the token>`."""
        if self._token is None:
            return
        scheme, _, given = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not given:
            raise ApiError(401, "this endpoint needs an 'Authorization: Bearer <token>' header")
        if not hmac.compare_digest(given.strip().encode("utf-8", "replace"), self._token):
            raise ApiError(401, "wrong bearer token")
