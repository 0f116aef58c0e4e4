"""Bearer tokens: what a usable token is, and the header check (constant-time compare)."""

import pytest

from specrl_sglang.server.auth import BearerAuth, check_token
from specrl_sglang.server.errors import ApiError

TOKEN = "0123456789abcdef-token"


@pytest.mark.parametrize("token", ["short", "x" * 15, "with space inside the token", "caf\u00e9-0123456789abc", "tab\t0123456789abcdef"])
def test_unusable_tokens_are_refused(token):
    with pytest.raises(ValueError, match="at least 16 printable ASCII"):
        check_token(token)


@pytest.mark.parametrize("header", [None, "", "Bearer", "Bearer ", "Basic " + TOKEN, TOKEN, f"Bearer {TOKEN}x", f"Bearer {TOKEN[:-1]}",
                                    "Bearer caf\u00e9"])
def test_wrong_headers_are_401(header):
    with pytest.raises(ApiError) as err:
        BearerAuth(TOKEN).check(header)
    assert err.value.status == 401


def test_right_header_passes_and_no_token_means_open():
    BearerAuth(TOKEN).check(f"Bearer {TOKEN}")
    BearerAuth(TOKEN).check(f"bearer {TOKEN}")  # the scheme is case-insensitive
    BearerAuth(None).check(None)
    assert not BearerAuth(None).enabled and BearerAuth(TOKEN).enabled
