"""Parameter capture helpers: stored values are cast back to the script's types."""

from __future__ import annotations

import pytest

from fleetdeck._capture_args import cast_like, flatten, object_fields, param, set_dotted


@pytest.mark.parametrize(("stored", "local", "expected"), [
    ("0.5", 0.1, 0.5), (3.0, 1, 3), ("7", 1, 7), ("true", False, True), ("off", True, False),
    (5, "name", "5"), ("[1, 2]", [0], [1, 2]), ([1, 2], (0,), (1, 2)), ("x", None, "x"),
])
def test_cast_like(stored, local, expected) -> None:
    assert cast_like(stored, local) == expected and type(cast_like(stored, local)) is type(expected)


def test_bad_stored_values_raise() -> None:
    with pytest.raises(ValueError):
        cast_like("maybe", True)
    with pytest.raises(ValueError):
        cast_like("abc", 1)


def test_nested_dicts_flatten_and_set_back() -> None:
    cfg = {"optim": {"lr": 0.1, "betas": [0.9, 0.99]}, "epochs": 3}
    assert flatten(cfg) == {"optim.lr": 0.1, "optim.betas": [0.9, 0.99], "epochs": 3}
    set_dotted(cfg, "optim.lr", 0.2)
    assert cfg["optim"]["lr"] == 0.2


def test_object_fields_and_param_types() -> None:
    class Config:
        lr = 0.1
        name = "x"
        _private = 1

        def method(self) -> None: ...

    assert object_fields(Config) == {"lr": 0.1, "name": "x"}
    assert param((1, 2)) == {"value": [1, 2], "type": "tuple"}
