"""Conversation states declared as classes: ``State`` and ``StatesGroup``.

A state declared as ``name = State()`` in ``class Form(StatesGroup)`` is named ``"Form:name"``; in a
group nested in another (``class Outer(StatesGroup): class Inner(StatesGroup): ...``) it is
``"Outer.Inner:name"``. These are the names aiogram gives its own states, so both can share one
store. aiogram's attribute names work too: ``Form.name.state`` (the full name, ``None`` for an
unnamed ``State()``), ``Form.name.group``, ``state(event, raw_state)`` as a filter,
``Form.__all_states_names__``, ``Form.__childs__``, ``Form.__all_childs__``, ``Form.get_root()``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, cast

__all__ = ["ANY_STATE", "State", "StateSpec", "StatesGroup", "StatesGroupMeta", "state_name"]


class State:
    """One state of a conversation.

    Declared in a ``StatesGroup`` body (``name = State()``) it takes its name from the group and
    the attribute. ``State("custom")`` has the explicit name ``"custom"``; ``State("*")`` matches
    any state in filters. A state equals another state or a ``str`` of the same name.
    """

    __slots__ = ("_attr", "_explicit", "_group")

    def __init__(self, name: str | None = None) -> None:
        if name is not None and (type(name) is not str or not name):
            raise ValueError(f"a state name must be a non-empty str, got {name!r}")
        self._explicit = name
        self._attr: str | None = None
        self._group: type[StatesGroup] | None = None

    def __set_name__(self, owner: type, attr: str) -> None:
        if isinstance(owner, StatesGroupMeta) and self._group is None:
            self._group = cast("type[StatesGroup]", owner)
            self._attr = attr

    @property
    def group(self) -> type[StatesGroup] | None:
        """The group this state was declared in, or ``None``."""
        return self._group

    @property
    def name(self) -> str:
        """The full name (``"Group:attr"``); raises ``ValueError`` for a state with no name."""
        if self._explicit is not None:
            return self._explicit
        if self._group is None or self._attr is None:
            raise ValueError(
                "this State() has no name: declare it in a StatesGroup body or give State('name')"
            )
        return f"{self._group.__full_group_name__}:{self._attr}"

    @property
    def state(self) -> str | None:
        """aiogram's name for ``name``: the full name, or ``None`` for an unnamed ``State()``."""
        return self.name if self.named else None

    def __call__(self, event: object = None, raw_state: str | None = None) -> bool:
        """As an aiogram filter: True if ``raw_state`` is this state (always, for ``ANY_STATE``)."""
        if not self.named:
            return raw_state is None
        name = self.name
        return name == "*" or raw_state == name

    @property
    def named(self) -> bool:
        """True if the state has a name (declared in a group, or given one)."""
        return self._explicit is not None or self._group is not None

    def __eq__(self, other: object) -> bool:
        if isinstance(other, State):
            if not (self.named and other.named):
                return self is other
            return self.name == other.name
        if isinstance(other, str):
            return self.named and self.name == other
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self.name) if self.named else id(self)

    def __str__(self) -> str:
        return self.name if self.named else ""

    def __repr__(self) -> str:
        return f"<State {self.name!r}>" if self.named else "<State (unnamed)>"


ANY_STATE = State("*")
"""Matches every state (including none) in state filters."""


class StatesGroupMeta(type):
    """Metaclass of ``StatesGroup``: collects the states and nested groups of a class body."""

    __parent__: StatesGroupMeta | None
    __states__: tuple[State, ...]
    __children__: tuple[StatesGroupMeta, ...]

    def __new__(
        mcs, name: str, bases: tuple[type, ...], namespace: dict[str, Any], **kwargs: Any
    ) -> StatesGroupMeta:
        cls = super().__new__(mcs, name, bases, namespace, **kwargs)
        states: list[State] = []
        children: list[StatesGroupMeta] = []
        for value in namespace.values():
            if isinstance(value, State):
                if value.group is cls:
                    states.append(value)
            elif isinstance(value, StatesGroupMeta):
                children.append(value)
        for child in children:
            child.__parent__ = cls
        cls.__parent__ = None
        cls.__states__ = tuple(states)
        cls.__children__ = tuple(children)
        return cls

    @property
    def __full_group_name__(cls) -> str:
        """``"Outer.Inner"`` for a nested group, the class name otherwise."""
        if cls.__parent__ is None:
            return cls.__name__
        return f"{cls.__parent__.__full_group_name__}.{cls.__name__}"

    @property
    def __all_states__(cls) -> tuple[State, ...]:
        """This group's states, then those of its nested groups (depth first)."""
        found = list(cls.__states__)
        for child in cls.__children__:
            found.extend(child.__all_states__)
        return tuple(found)

    @property
    def __state_names__(cls) -> tuple[str, ...]:
        """The full names of ``__all_states__`` (nested groups included; aiogram's own
        ``__state_names__`` lists only the states declared directly)."""
        return tuple(state.name for state in cls.__all_states__)

    @property
    def __all_states_names__(cls) -> tuple[str, ...]:
        """aiogram's name: the full names of ``__all_states__``."""
        return cls.__state_names__

    @property
    def __childs__(cls) -> tuple[StatesGroupMeta, ...]:
        """aiogram's name for ``__children__``: the groups nested directly in this one."""
        return cls.__children__

    @property
    def __all_childs__(cls) -> tuple[StatesGroupMeta, ...]:
        """Every group nested in this one, at any depth (the direct ones first, as in aiogram)."""
        found = list(cls.__children__)
        for child in cls.__children__:
            found.extend(child.__all_childs__)
        return tuple(found)

    def get_root(cls) -> StatesGroupMeta:
        """The outermost group this one is nested in (itself when not nested)."""
        node: StatesGroupMeta = cls
        while node.__parent__ is not None:
            node = node.__parent__
        return node

    def __contains__(cls, item: object) -> bool:
        if isinstance(item, str):
            return item in cls.__state_names__
        if isinstance(item, State):
            return item.named and item.name in cls.__state_names__
        if isinstance(item, StatesGroupMeta):
            node: StatesGroupMeta | None = item.__parent__
            while node is not None:
                if node is cls:
                    return True
                node = node.__parent__
            return False
        return False

    def __iter__(cls) -> Iterator[State]:
        return iter(cls.__all_states__)

    def __len__(cls) -> int:
        return len(cls.__all_states__)

    def __repr__(cls) -> str:
        return f"<StatesGroup {cls.__full_group_name__!r}>"


class StatesGroup(metaclass=StatesGroupMeta):
    """Base class of a group of states; see the module docstring for naming.

    ``state in Group`` (a ``State`` or a name, nested groups included), ``list(Group)`` and
    ``Group.__all_states__`` list the states; ``Group.__states__`` only those declared directly.
    """


StateSpec = State | str | None
"""What ``set_state`` accepts: a named ``State``, a state name, or ``None`` (no state)."""


def state_name(state: object) -> str | None:
    """Return the stored name of ``state`` (a named ``State``, a non-empty ``str`` or ``None``).

    Raises ``TypeError`` for another object (a ``StatesGroup`` included) and ``ValueError`` for an
    unnamed ``State`` or an empty name.
    """
    if state is None:
        return None
    if isinstance(state, str):
        if not state:
            raise ValueError("a state name must be a non-empty str")
        if state == "*":
            raise ValueError("'*' matches any state in filters; it cannot be set as a state")
        return state
    if isinstance(state, State):
        name = state.name
        if name == "*":
            raise ValueError("ANY_STATE matches any state in filters; it cannot be set as a state")
        return name
    if isinstance(state, StatesGroupMeta):
        raise TypeError(f"{state!r} is a group of states; set one of its states instead")
    raise TypeError(f"a state must be a State, a str or None, not {type(state).__name__}")
