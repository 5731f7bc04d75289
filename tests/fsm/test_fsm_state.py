"""State and StatesGroup: names, nesting, membership, listing, and what set_state refuses."""

from __future__ import annotations

import pytest

from statekit.fsm import ANY_STATE, State, StatesGroup, state_name


class Form(StatesGroup):
    name = State()
    age = State()

    class Address(StatesGroup):
        city = State()

        class Geo(StatesGroup):
            lat = State()


class Other(StatesGroup):
    name = State()


def test_names_follow_group_and_attribute() -> None:
    assert Form.name.name == "Form:name"
    assert Form.Address.city.name == "Form.Address:city"
    assert Form.Address.Geo.lat.name == "Form.Address.Geo:lat"
    assert str(Form.age) == "Form:age"
    assert Form.name.group is Form
    assert Form.Address.__full_group_name__ == "Form.Address"


def test_membership_by_state_name_and_group() -> None:
    assert Form.name in Form
    assert "Form:age" in Form
    assert Form.Address.Geo.lat in Form  # nested groups count
    assert Form.Address.Geo.lat in Form.Address
    assert Form.name not in Form.Address
    assert Other.name not in Form
    assert "Form:nope" not in Form
    assert Form.Address in Form and Form.Address.Geo in Form
    assert Form not in Form.Address
    assert 42 not in Form


def test_groups_list_their_states() -> None:
    assert Form.__states__ == (Form.name, Form.age)
    assert list(Form) == [Form.name, Form.age, Form.Address.city, Form.Address.Geo.lat]
    assert Form.__state_names__ == ("Form:name", "Form:age", "Form.Address:city", "Form.Address.Geo:lat")
    assert len(Form.Address) == 2
    assert Form.__children__ == (Form.Address,)


def test_equality_with_states_and_names() -> None:
    assert Form.name == "Form:name"
    assert Form.name != Other.name
    assert Form.name == State("Form:name")
    assert len({Form.name, State("Form:name"), Other.name}) == 2


def test_state_name_accepts_states_names_and_none() -> None:
    assert state_name(Form.name) == "Form:name"
    assert state_name("custom") == "custom"
    assert state_name(None) is None
    assert state_name(State("explicit")) == "explicit"


@pytest.mark.parametrize(
    ("bad", "error", "text"),
    [
        (42, TypeError, "int"),
        (Form, TypeError, "group"),
        (State(), ValueError, "no name"),
        ("", ValueError, "non-empty"),
        ("*", ValueError, "any state"),
        (ANY_STATE, ValueError, "any state"),
        (b"Form:name", TypeError, "bytes"),
    ],
)
def test_state_name_refuses_unknown_objects(bad: object, error: type[Exception], text: str) -> None:
    with pytest.raises(error, match=text):
        state_name(bad)


def test_state_constructor_checks_name() -> None:
    with pytest.raises(ValueError):
        State("")
    unnamed = State()
    assert not unnamed.named and unnamed != State() and repr(unnamed) == "<State (unnamed)>"
