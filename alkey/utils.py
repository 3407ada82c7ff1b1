"""Identifiers ("oids") of model instances, tables and the global write token.

An oid names what a cache key depends on (grammar: the project's key spec)::

    alkey:*#*                   the global write token
    alkey:<table>#*             a table token (any row of the table)
    alkey:<table>#<pk>          one row

``<table>`` is the percent-escaped table name, ``schema.name`` when the table
has a schema; it is always the table of the mapper at the top of the
(non-concrete) inheritance tree, so an ``Engineer`` row and the ``Employee``
row it extends share one oid. ``<pk>`` is the identity, one part per primary
key column separated by ``,``: a plain decimal for an ``int`` and a tagged,
percent-escaped text for any other type (``s:`` str, ``u:`` UUID, ``b:``
bytes, ``d:`` date, ``t:`` datetime, ``n:`` Decimal, ``f:`` float, ``x:``
anything else, one way only). The encoding is canonical: one value, one oid.
"""

from __future__ import annotations

import datetime
import decimal
import re
import uuid
from collections.abc import Callable
from typing import Any
from urllib.parse import unquote_to_bytes

from sqlalchemy import event, inspect
from sqlalchemy.orm import InstanceState, Mapper
from sqlalchemy.sql.expression import TableClause

from . import _native

__all__ = [
    "get_object_id",
    "get_table_id",
    "resolve_identity",
    "unpack_object_id",
    "valid_object_id",
    "valid_write_token",
]

_PREFIX = "alkey:"
_GLOBAL = "alkey:*#*"

# What _check_oid() returns; the same numbers as ALKEY_OID_* in csrc/keys.h.
_OID_NONE = 0
_OID_INSTANCE = 1
_OID_TABLE = 2
_OID_GLOBAL = 3

_ALNUM = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
_NAMECH = _ALNUM + b"_$-"
_VALCH = _ALNUM + b"-_.:@+=!$&'()*;"

_FORMS = (
    "expected 'alkey:*#*', 'alkey:<table>#*' or 'alkey:<table>#<pk>', "
    "e.g. 'alkey:users#1', 'alkey:public.users#*', 'alkey:tags#s:a%2Fb' or "
    "'alkey:memberships#1,s:admin' (<table> is 'name' or 'schema.name'; "
    "<pk> parts are canonical ints or s:/u:/b:/d:/t:/n:/f:/x: values; bytes "
    "outside [A-Za-z0-9_$-] in names and outside [A-Za-z0-9-_.:@+=!$&'()*;] "
    "in values are escaped as %XX, uppercase, and only those)"
)


# -- escaping ---------------------------------------------------------------

def _escaper(safe: bytes) -> Callable[[bytes], str]:
    """Return esc(data): the bytes of data not in ``safe`` as %XX."""
    table = [chr(b) if b in safe else "%%%02X" % b for b in range(256)]

    def escape(data: bytes) -> str:
        if not data.translate(None, safe):
            return data.decode("ascii")
        return "".join([table[b] for b in data])

    return escape


_escape_name_bytes = _escaper(_NAMECH)
_escape_value_bytes = _escaper(_VALCH)


def _escape_name(text: str) -> str:
    return _escape_name_bytes(str.encode(text, "utf-8", "surrogatepass"))


def _escape_value(text: str) -> str:
    return _escape_value_bytes(str.encode(text, "utf-8", "surrogatepass"))


def _unescape(text: str) -> str:
    # Only called on validated text, whose escapes are well formed.
    if "%" not in text:
        return text
    return unquote_to_bytes(text).decode("utf-8", "surrogatepass")


# -- the grammar as regular expressions ---------------------------------------

def _pct(safe: bytes) -> str:
    """Pattern of the escapes allowed where ``safe`` bytes stand as is."""
    alternatives = []
    for high in range(16):
        lows = "".join(
            "%X" % low for low in range(16) if high * 16 + low not in safe
        )
        if lows:
            alternatives.append("%X[%s]" % (high, lows))
    return "%%(?:%s)" % "|".join(alternatives)


def _chars(safe: bytes) -> str:
    return "[%s]" % "".join(re.escape(chr(b)) for b in sorted(safe))


_NAME = "(?:%s|%s)+" % (_chars(_NAMECH), _pct(_NAMECH))
_VALUE = "(?:%s|%s)*" % (_chars(_VALCH), _pct(_VALCH))
_PART = "(?:0|-?[1-9][0-9]*|[subdtnfx]:%s)" % _VALUE
_OID_RE = re.compile(
    r"alkey:(?:(?P<glob>\*#\*)|(?P<table>%s(?:\.%s)?)#(?:(?P<star>\*)|"
    r"(?P<pk>%s(?:,%s)*)))" % (_NAME, _NAME, _PART, _PART)
)


def _check_oid(value: object) -> int:
    """Return the kind of oid ``value`` is (``_OID_*``), strictly.

    The pure-Python twin of the extension's ``alkey_oid_kind``, from the
    regular expression unpack_object_id() parses with: the whole text must
    match the grammar, escapes included (uppercase hex, and only for bytes
    that may not stand as they are). Non-str values are ``_OID_NONE``.
    The library asks the extension; the tests check the two agree.
    """
    if not isinstance(value, str):
        return _OID_NONE
    match = _OID_RE.fullmatch(value)
    if match is None:
        return _OID_NONE
    if match.group("glob") is not None:
        return _OID_GLOBAL
    if match.group("star") is not None:
        return _OID_TABLE
    return _OID_INSTANCE


class _OidCheck:
    """A strict test for one family of oid kinds.

    Call it for a bool (``valid_object_id(s)``), or use ``match(s)``, which
    is truthy or None like the compiled regex the seed exposed.
    """

    def __init__(self, name: str, native: Callable[[object], bool]) -> None:
        self.__name__ = name
        self._native = native

    def __call__(self, value: object) -> bool:
        return self._native(value)

    def match(self, value: object) -> bool | None:
        """Return True when ``value`` is valid, else None."""
        return True if self(value) else None

    def __repr__(self) -> str:
        return "<alkey.utils.%s>" % self.__name__


valid_object_id = _OidCheck("valid_object_id", _native.valid_object_id)
valid_object_id.__doc__ = """True for the oid of one row (``alkey:users#1``).

Table and global tokens are not object ids: see ``valid_write_token``.
"""

valid_write_token = _OidCheck("valid_write_token", _native.valid_write_token)
valid_write_token.__doc__ = """True for a table token (``alkey:users#*``)
or the global write token (``alkey:*#*``).
"""


# -- formatting ---------------------------------------------------------------

def _format_other(value: Any) -> str:
    return "x:" + _escape_value(str(value))


def _format_int(value: int) -> str:
    return int.__repr__(value)


def _format_str(value: str) -> str:
    return "s:" + _escape_value(value)


def _format_uuid(value: uuid.UUID) -> str:
    return "u:" + str(value)


def _format_bytes(value: bytes | bytearray | memoryview) -> str:
    return "b:" + _escape_value_bytes(bytes(value))


def _format_datetime(value: datetime.datetime) -> str:
    return "t:" + _escape_value(value.isoformat())


def _format_date(value: datetime.date) -> str:
    return "d:" + _escape_value(value.isoformat())


def _format_decimal(value: decimal.Decimal) -> str:
    return "n:" + _escape_value(str(value))


def _format_float(value: float) -> str:
    return "f:" + _escape_value(float.__repr__(value))


# Exact types first; subclasses go through _format_value's isinstance chain.
_FORMATTERS: dict[type, Callable[[Any], str]] = {
    int: _format_int,
    str: _format_str,
    uuid.UUID: _format_uuid,
    bytes: _format_bytes,
    bytearray: _format_bytes,
    memoryview: _format_bytes,
    datetime.datetime: _format_datetime,
    datetime.date: _format_date,
    decimal.Decimal: _format_decimal,
    float: _format_float,
    bool: _format_other,
}


def _format_value(value: Any) -> str:
    """Return one pk part for ``value``."""
    formatter = _FORMATTERS.get(type(value))
    if formatter is not None:
        return formatter(value)
    if isinstance(value, bool):
        return _format_other(value)
    if isinstance(value, int):
        return _format_int(value)
    if isinstance(value, str):
        return _format_str(value)
    if isinstance(value, uuid.UUID):
        return _format_uuid(value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return _format_bytes(value)
    if isinstance(value, datetime.datetime):  # before date: it is one
        return _format_datetime(value)
    if isinstance(value, datetime.date):
        return _format_date(value)
    if isinstance(value, decimal.Decimal):
        return _format_decimal(value)
    if isinstance(value, float):
        return _format_float(value)
    return _format_other(value)


def _format_pk(identity: tuple[Any, ...]) -> str:
    if len(identity) == 1:
        return _format_value(identity[0])
    return ",".join([_format_value(value) for value in identity])


def _table_text(schema: str | None, name: str) -> str:
    if not name or schema == "":
        raise ValueError(
            "a table name and its schema must not be empty: %r"
            % (name if schema is None else "%s.%s" % (schema, name))
        )
    if schema is None:
        return _escape_name(name)
    return _escape_name(schema) + "." + _escape_name(name)


class _TableInfo:
    """A mapper's identity table, with its escaped oid prefix precomputed."""

    __slots__ = ("prefix", "token")

    def __init__(self, text: str) -> None:
        self.prefix = _PREFIX + text + "#"
        self.token = self.prefix + "*"


def _clause_text(table: TableClause) -> str:
    return _table_text(getattr(table, "schema", None), table.name)


# Mapper -> _TableInfo. Emptied whenever a class gets mapped (see _forget),
# so that mappers of disposed registries do not pile up.
_TABLES: dict[Mapper[Any], _TableInfo] = {}


def _table_info(mapper: Mapper[Any]) -> _TableInfo:
    info = _TABLES.get(mapper)
    if info is not None:
        return info
    # Joined and single-table inheritance share the root's table (and its
    # identities); a concrete mapper has rows of its own table.
    top = mapper
    while top.inherits is not None and not top.concrete:
        top = top.inherits
    table = top.local_table
    if not isinstance(table, TableClause):
        raise TypeError(
            "alkey identifies rows by table, but %s is mapped to %r, "
            "not a table" % (mapper, table)
        )
    info = _TABLES[mapper] = _TableInfo(_clause_text(table))
    return info


def _state_oid(state: InstanceState[Any], obj: object) -> str:
    info = _table_info(state.mapper)
    key = state.key
    if key is not None:
        identity = key[1]
        if len(identity) == 1 and type(identity[0]) is int:  # the usual key
            return info.prefix + int.__repr__(identity[0])
        return info.prefix + _format_pk(identity)
    identity = state.mapper.primary_key_from_instance(obj)
    if any(value is None for value in identity):
        return info.token
    return info.prefix + _format_pk(identity)


# -- public API ---------------------------------------------------------------

def get_object_id(instance: Any) -> Any:
    """Return the oid of a model instance, model class or table.

    - a mapped instance: ``alkey:<table>#<pk>`` from its persistent
      identity, else from the primary key values it was given (a pending
      object with an assigned key); an instance without a complete key
      stands for its table, ``alkey:<table>#*``.
    - a mapped class or a ``Table``: ``alkey:<table>#*``.
    - any other value is returned unchanged.

    ``<table>`` is the table at the top of the mapper's (non-concrete)
    inheritance tree, ``schema.name`` when it has a schema. Raises
    TypeError for a class mapped to something other than a table.

    >>> from sqlalchemy import Column, Integer, MetaData, Table
    >>> get_object_id(Table('users', MetaData(), Column('id', Integer)))
    'alkey:users#*'
    >>> get_object_id('flobble')
    'flobble'
    """
    if isinstance(instance, TableClause):
        return _PREFIX + _clause_text(instance) + "#*"
    inspected = inspect(instance, raiseerr=False)
    if isinstance(inspected, InstanceState):
        return _state_oid(inspected, instance)
    if isinstance(inspected, Mapper) and isinstance(instance, type):
        return _table_info(inspected).token
    return instance


def get_table_id(table: Any) -> str:
    """Return the table token ``alkey:<table>#*``.

    ``table`` is a ``Table``, a mapped class (or instance, or mapper: its
    identity table, as in ``get_object_id``) or a str. A str is the table's
    name, except that its first ``.`` separates a schema, as in
    ``Table.fullname`` (``'public.users'``); a table whose own name holds a
    ``.`` and has no schema can only be given as a ``Table``. ``'*'`` gives
    the global write token.

    >>> get_table_id('items')
    'alkey:items#*'
    >>> get_table_id('public.users')
    'alkey:public.users#*'
    >>> get_table_id('*')
    'alkey:*#*'
    """
    if isinstance(table, str):
        if table == "*":
            return _GLOBAL
        schema, dot, name = table.partition(".")
        if dot:
            return _PREFIX + _table_text(schema, name) + "#*"
        return _PREFIX + _table_text(None, table) + "#*"
    if isinstance(table, TableClause):
        return _PREFIX + _clause_text(table) + "#*"
    inspected = inspect(table, raiseerr=False)
    if isinstance(inspected, InstanceState):
        inspected = inspected.mapper
    if isinstance(inspected, Mapper):
        return _table_info(inspected).token
    raise TypeError(
        "get_table_id() takes a table name, a Table or a mapped class, "
        "not %r" % (table,)
    )


def _decode_uuid(text: str) -> uuid.UUID:
    value = uuid.UUID(text)
    if str(value) != text:
        raise ValueError("a UUID is written lowercase, 8-4-4-4-12")
    return value


def _decode_decimal(text: str) -> decimal.Decimal:
    try:
        return decimal.Decimal(text)
    except decimal.InvalidOperation:
        raise ValueError("not a decimal number") from None


_DECODERS: dict[str, Callable[[str], Any]] = {
    "s": _unescape,
    "x": _unescape,
    "b": unquote_to_bytes,
    "u": lambda text: _decode_uuid(_unescape(text)),
    "d": lambda text: datetime.date.fromisoformat(_unescape(text)),
    "t": lambda text: datetime.datetime.fromisoformat(_unescape(text)),
    "n": lambda text: _decode_decimal(_unescape(text)),
    "f": lambda text: float(_unescape(text)),
}


def _decode_part(part: str) -> Any:
    if part[1:2] != ":":
        return int(part)
    return _DECODERS[part[0]](part[2:])


def unpack_object_id(oid: str) -> tuple[str, Any]:
    """Return ``(table, pk)`` for an oid, the inverse of ``get_object_id``.

    ``table`` is ``'name'`` or ``'schema.name'`` (``'*'`` for the global
    token); ``pk`` is None for a table or the global token, the value of a
    one-column key, or a tuple for a composite key, decoded back to its
    type (an ``x:`` value comes back as its text). Raises ValueError for
    anything that is not a valid oid, or whose values do not decode (a
    ``u:`` that is not a lowercase hyphenated UUID, a ``d:`` that is not an
    ISO date, ...), and TypeError for a non-str.

    >>> unpack_object_id('alkey:questions#1234')
    ('questions', 1234)
    >>> unpack_object_id('alkey:questions#*')
    ('questions', None)
    >>> unpack_object_id('alkey:memberships#1,s:admin')
    ('memberships', (1, 'admin'))
    """
    if not isinstance(oid, str):
        raise TypeError("an oid is a str, not %r" % (oid,))
    match = _OID_RE.fullmatch(oid)
    if match is None:
        raise ValueError("%r is not an alkey identifier: %s" % (oid, _FORMS))
    if match.group("glob") is not None:
        return ("*", None)
    try:
        table = ".".join([_unescape(name)
                          for name in match.group("table").split(".")])
        pk_text = match.group("pk")
        if pk_text is None:
            return (table, None)
        parts = [_decode_part(part) for part in pk_text.split(",")]
    except ValueError as err:
        raise ValueError(
            "%r is an alkey identifier that does not decode: %s" % (oid, err)
        ) from None
    if len(parts) == 1:
        return (table, parts[0])
    return (table, tuple(parts))


# -- the key builder's resolver -----------------------------------------------

# type(obj) -> what resolve_identity() does with its instances. Cached
# "nothing" is only true until another class gets mapped (imperative
# mapping can map a class that already has instances), so _forget empties
# the cache whenever a mapper is made.
_CLASS = "class"
_TABLE = "table"
_NOTHING = "nothing"
_KINDS: dict[type, str | Callable[[object], object]] = {}


def _inspect_state(obj: object) -> object:
    return inspect(obj, raiseerr=False)


def _classify(cls: type) -> str | Callable[[object], object]:
    kind: str | Callable[[object], object]
    if issubclass(cls, type):
        kind = _CLASS
    elif issubclass(cls, TableClause):
        kind = _TABLE
    else:
        mapper = inspect(cls, raiseerr=False)
        if isinstance(mapper, Mapper):
            # Instances of a mapped class: its manager's state getter is
            # what inspect() ends up calling, minus the walk over the MRO.
            kind = mapper.class_manager.state_getter()
        elif any(inspect(base, raiseerr=False) is not None
                 for base in cls.__mro__):
            kind = _inspect_state
        else:
            kind = _NOTHING
    _KINDS[cls] = kind
    return kind


def _forget(*args: Any) -> None:
    _KINDS.clear()
    _TABLES.clear()


event.listen(Mapper, "instrument_class", _forget)
event.listen(Mapper, "after_mapper_constructed", _forget)


def resolve_identity(obj: object) -> str | None:
    """Return the oid of a mapped instance, mapped class or Table, else None.

    The resolver the native key builder calls for objects it does not
    know: the same oid as ``get_object_id``, decided per type once.
    """
    cls = type(obj)
    kind = _KINDS.get(cls)
    if kind is None:
        kind = _classify(cls)
    if kind is _NOTHING:
        return None
    if kind is _TABLE:
        return _PREFIX + _clause_text(obj) + "#*"  # type: ignore[arg-type]
    if kind is _CLASS:
        mapper = inspect(obj, raiseerr=False)
        if isinstance(mapper, Mapper):
            return _table_info(mapper).token
        return None
    try:
        state = kind(obj)  # type: ignore[operator]
    except (AttributeError, KeyError):  # made without __init__: no state
        return None
    if isinstance(state, InstanceState):
        return _state_oid(state, obj)
    return None
