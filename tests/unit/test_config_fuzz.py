"""Every config key with a wrong type, an out-of-range value, or a misspelt name is refused, naming the key."""

from __future__ import annotations

from typing import Any, get_args

import annotated_types
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from blast_grpc.config import Config, ConfigError, config_from_dict


def leaves(model: type[BaseModel], prefix: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], Any]]:
    out = []
    for name, field in model.model_fields.items():
        sub = field.annotation
        if isinstance(sub, type) and issubclass(sub, BaseModel):
            out += leaves(sub, (*prefix, name))
        else:
            out.append(((*prefix, name), field))
    return out


LEAVES = leaves(Config)


def nest(path: tuple[str, ...], value: Any) -> dict[str, Any]:
    raw: dict[str, Any] = {}
    node = raw
    for part in path[:-1]:
        node = node.setdefault(part, {})
    node[path[-1]] = value
    return raw


def wrong_type(field: Any) -> Any:
    kinds = set(get_args(field.annotation)) or {field.annotation}
    if kinds & {int, float}:
        return "lots"
    if bool in kinds:
        return "sometimes"
    if str in kinds:
        return {"not": "a string"}
    return 12345  # lists and mappings


def out_of_range(field: Any) -> Any | None:
    for m in field.metadata:
        if isinstance(m, annotated_types.Ge):
            return m.ge - 1
        if isinstance(m, annotated_types.Gt):
            return m.gt - 1
        if isinstance(m, annotated_types.Le):
            return m.le + 1
    return None


@pytest.mark.parametrize(("path", "field"), LEAVES, ids=[".".join(p) for p, _ in LEAVES])
def test_wrong_type_names_the_key(path: tuple[str, ...], field: Any) -> None:
    with pytest.raises(ConfigError) as e:
        config_from_dict(nest(path, wrong_type(field)), "cfg.yaml")
    assert ".".join(path) in str(e.value)


RANGED = [(p, f, v) for p, f in LEAVES if (v := out_of_range(f)) is not None]


@pytest.mark.parametrize(("path", "field", "value"), RANGED, ids=[".".join(p) for p, _, _ in RANGED])
def test_out_of_range_names_the_key(path: tuple[str, ...], field: Any, value: Any) -> None:
    with pytest.raises(ConfigError) as e:
        config_from_dict(nest(path, value), "cfg.yaml")
    assert ".".join(path) in str(e.value)


@settings(max_examples=60, deadline=None)
@given(path=st.sampled_from([p for p, _ in LEAVES]), typo=st.text("abcdefghijklmnopqrstuvwxyz_", min_size=1,
                                                                   max_size=6))
def test_misspelt_keys_are_refused_by_name(path: tuple[str, ...], typo: str) -> None:
    bad = (*path[:-1], path[-1] + typo)
    assume(bad not in {p for p, _ in LEAVES})  # "llm_model" + "_mini" is a real key
    with pytest.raises(ConfigError) as e:
        config_from_dict(nest(bad, 1), "cfg.yaml")
    assert ".".join(bad) in str(e.value) and "unknown key" in str(e.value)
