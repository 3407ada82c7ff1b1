"""Which tables a statement writes, for writes whose rows are not known one
by one: ORM bulk and Core INSERT/UPDATE/DELETE, and text SQL.

Such a write replaces the table's token and its *epoch* (``alkey:<table>#!``),
which every instance key of the table folds in, so every key naming a row of
the table changes.  Text SQL is scanned conservatively: any
INSERT/UPDATE/DELETE/MERGE/REPLACE/TRUNCATE target found counts, and a write
keyword whose target cannot be read invalidates everything (the global
epoch).  Writes hidden from the statement text (triggers, stored procedures,
dynamic SQL, another program) cannot be seen.
"""

from __future__ import annotations

import re
from typing import Any, Iterable

from sqlalchemy import Table
from sqlalchemy.sql.elements import TextClause

from .constants import GLOBAL_EPOCH, GLOBAL_WRITE_TOKEN
from .utils import get_table_id

__all__ = ['GLOBAL_EPOCH', 'epoch_id', 'statement_targets', 'table_targets', 'text_targets']

_IDENT = r'(?:"(?:[^"]|"")+"|`[^`]+`|\[[^\]]+\]|[A-Za-z_][\w$]*)'
_NAME = rf'{_IDENT}(?:\s*\.\s*{_IDENT}){{0,2}}'
_WRITE = re.compile(
    r'\b(?P<verb>insert(?:\s+or\s+\w+)?\s+into|replace\s+into|upsert\s+into'
    r'|update(?:\s+only)?|delete\s+from(?:\s+only)?|delete(?=\s)'
    r'|merge\s+into|truncate(?:\s+table)?(?:\s+only)?)\s+'
    rf'(?P<name>{_NAME}(?:\s*,\s*{_NAME})*)',
    re.IGNORECASE)
_KEYWORD = re.compile(r'\b(insert|update|delete|merge|truncate|replace|upsert)\b',
                      re.IGNORECASE)
# Words before "UPDATE" that make it no write: FOR [NO KEY] UPDATE, DO UPDATE,
# ON UPDATE (a foreign key action).
_NOT_A_WRITE_BEFORE = {'for', 'key', 'do', 'on'}
_COMMENT = re.compile(r'--[^\n]*|/\*.*?\*/', re.DOTALL)
_STRING = re.compile(r"'(?:[^']|'')*'")


def epoch_id(table_oid: str) -> str:
    """The epoch identifier of a table identifier ``alkey:<t>#*``."""
    return table_oid[:-1] + '!'


def _unquote(part: str) -> str:
    part = part.strip()
    if part[:1] == '"' and part[-1:] == '"':
        return part[1:-1].replace('""', '"')
    if part[:1] in '`[' and part[-1:] in '`]':
        return part[1:-1]
    return part


def _split_name(name: str) -> list[str]:
    return [_unquote(p) for p in re.findall(_IDENT, name)]


class _Tables:
    """Tables the mappers know, by name, and which base tables (whose
    epochs instance keys fold in) each one feeds."""

    def __init__(self) -> None:
        self._by_name: dict[str, list[Table]] | None = None
        self._bases: dict[Table, set[Table]] = {}

    def reset(self) -> None:
        self._by_name = None
        self._bases = {}

    def _load(self) -> None:
        by_name: dict[str, list[Table]] = {}
        bases: dict[Table, set[Table]] = {}
        try:
            from sqlalchemy.orm.mapper import _all_registries
            registries = list(_all_registries())
        except ImportError:  # pragma: no cover - a future SQLAlchemy
            registries = []
        for reg in registries:
            for mapper in reg.mappers:
                base = mapper.base_mapper.local_table
                for table in mapper.tables:
                    if not isinstance(table, Table):
                        continue
                    bases.setdefault(table, set()).add(base)
                    for key in {table.name.lower(), table.fullname.lower()}:
                        by_name.setdefault(key, []).append(table)
        self._by_name, self._bases = by_name, bases

    def named(self, parts: list[str]) -> list[Table]:
        if self._by_name is None:
            self._load()
        assert self._by_name is not None
        key = '.'.join(parts[-2:]).lower()
        found = self._by_name.get(key) or self._by_name.get(parts[-1].lower(), [])
        return list(dict.fromkeys(found))

    def bases(self, table: Table) -> set[Table]:
        if self._by_name is None:
            self._load()
        return self._bases.get(table, set())


tables = _Tables()


def table_targets(table: Any, out: dict[str, None]) -> None:
    """Record what a write to ``table`` (a Table, or a name) changes."""
    if isinstance(table, Table):
        related = {table} | tables.bases(table)
        oids = [get_table_id(t) for t in related]
    else:
        oids = [get_table_id(table)]
    for oid in oids:
        out[oid] = None
        out[epoch_id(oid)] = None
    out[GLOBAL_WRITE_TOKEN] = None


def _everything(out: dict[str, None]) -> None:
    out[GLOBAL_WRITE_TOKEN] = None
    out[GLOBAL_EPOCH] = None


def text_targets(sql: str, out: dict[str, None]) -> None:
    """Record the targets of the writes in a SQL text, conservatively."""
    if not _KEYWORD.search(sql):
        return
    scrubbed = _STRING.sub("''", _COMMENT.sub(' ', sql))
    found_write = False
    for match in _WRITE.finditer(scrubbed):
        before = scrubbed[:match.start()].split()
        verb = match.group('verb').split()[0].lower()
        if verb == 'update' and before and before[-1].lower() in _NOT_A_WRITE_BEFORE:
            continue
        found_write = True
        names = match.group('name')
        for name in (re.split(r'\s*,\s*', names) if verb == 'truncate'
                     else [names.split(',')[0]]):
            parts = _split_name(name)
            last = parts[-1].lower() if parts else ''
            if last == 'set':
                continue  # MERGE ... THEN UPDATE SET: the target is named already
            if not parts or last in ('from', 'select', 'values', 'where'):
                _everything(out)
                continue
            literal = '.'.join(parts[-2:])
            known = tables.named(parts)
            for table in known:
                table_targets(table, out)
            if literal not in {t.fullname for t in known}:
                # Unknown, or matched without regard to case or schema:
                # the name as written counts too (over-invalidating is safe).
                table_targets(literal, out)
    if not found_write:
        # A write keyword we could not place (e.g. EXECUTE of a procedure
        # that writes is not even seen; "INSERT" with odd syntax is).
        for match in _KEYWORD.finditer(scrubbed):
            word = match.group(1).lower()
            before = scrubbed[:match.start()].split()
            if word == 'update' and before and before[-1].lower() in _NOT_A_WRITE_BEFORE:
                continue
            if word in ('replace', 'upsert') and not re.match(
                    r'\s*into\b', scrubbed[match.end():], re.IGNORECASE):
                continue  # the replace() function, a column called upsert
            _everything(out)
            return


def statement_targets(statement: Any, out: dict[str, None]) -> None:
    """Record what executing ``statement`` (a Core/ORM statement, a text()
    clause or a SQL string) writes."""
    if isinstance(statement, str):
        text_targets(statement, out)
        return
    if isinstance(statement, TextClause):
        text_targets(statement.text, out)
        return
    if not getattr(statement, 'is_dml', False):
        return
    table = getattr(statement, 'table', None)
    found = False
    for candidate in _tables_of(table):
        table_targets(candidate, out)
        found = True
    if not found:
        _everything(out)


def _tables_of(clause: Any) -> Iterable[Table]:
    if isinstance(clause, Table):
        yield clause
        return
    for attr in ('element', 'original'):  # annotated / aliased forms
        inner = getattr(clause, attr, None)
        if isinstance(inner, Table):
            yield inner
            return
    for child in getattr(clause, '_from_objects', ()) or ():
        if isinstance(child, Table):
            yield child
    for side in ('left', 'right'):  # joins
        inner = getattr(clause, side, None)
        if inner is not None:
            yield from _tables_of(inner)
