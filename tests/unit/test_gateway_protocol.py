"""The typed request models refuse what does not fit with a 400 naming the place (gateway/protocol.py)."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.errors import ApiError
from gateway.protocol import ResponsesRequest, parse_body


@pytest.mark.parametrize("kind", [["message"], {"a": 1}, 3])
def test_an_input_item_type_that_is_not_a_string_is_a_400(kind: Any) -> None:
    # Found by the gateway fuzz test: a list as "type" raised TypeError (a 500) in the discriminator.
    with pytest.raises(ApiError) as err:
        parse_body(ResponsesRequest, {"input": [{"type": kind, "role": "user", "content": "x"}]})
    assert err.value.status == 400 and "input[0].type" in err.value.message, err.value.message
