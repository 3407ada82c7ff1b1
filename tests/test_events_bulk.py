"""Writes whose rows are not known one by one: ORM bulk, Core and text SQL,
in a session or on a connection of their own, on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest
from sqlalchemy import delete, insert, text, update

from alkey import _dml
from alkey.constants import GLOBAL_WRITE_TOKEN
from tests.models import Engineer, Order, User
from tests.support import Watch

USERS = ('alkey:users#1', 'alkey:users#2', 'alkey:users#3', 'alkey:users#*', User)
OTHERS = ('alkey:orders#10', 'alkey:tags#s:plain', 'alkey:orders#*')


def test_orm_bulk_update_changes_every_key_of_the_table(Maker, seeded, kg):
    watch = Watch(kg, *USERS, *OTHERS, GLOBAL_WRITE_TOKEN)
    with Maker() as s:
        s.execute(update(User).where(User.id == 1).values(name='bulk'))
        assert watch.changed() == set()  # not before the commit
        s.commit()
    assert watch.changed() == {*USERS, GLOBAL_WRITE_TOKEN}


def test_orm_bulk_delete_and_insert(Maker, seeded, kg):
    watch = Watch(kg, *USERS, *OTHERS)
    with Maker() as s:
        s.execute(delete(Order).where(Order.id == 10))
        s.execute(insert(User), [{'id': 8, 'name': 'h'}])
        s.commit()
    assert watch.changed() == {*USERS, 'alkey:orders#10', 'alkey:orders#*'}


def test_rolled_back_bulk_writes_invalidate_nothing(Maker, seeded, kg, server):
    watch = Watch(kg, *USERS, *OTHERS)
    with Maker() as s:
        s.execute(update(User).values(name='x'))
        sp = s.begin_nested()
        s.execute(delete(Order))
        sp.rollback()
        s.rollback()
    assert watch.changed() == set()
    with Maker() as s:
        sp = s.begin_nested()
        s.execute(delete(Order))
        sp.rollback()
        s.execute(update(User).values(name='y'))
        s.commit()
    assert watch.changed() == set(USERS)


def test_core_statements_on_the_sessions_connection(Maker, seeded, kg):
    watch = Watch(kg, *USERS, *OTHERS)
    users = User.__table__
    with Maker() as s:
        s.connection().execute(users.update().where(users.c.id == 2).values(name='c'))
        s.commit()
    assert watch.changed() == set(USERS)


def test_core_statements_on_a_connection_of_their_own(engine, Maker, seeded, kg):
    watch = Watch(kg, *USERS, *OTHERS)
    orders = Order.__table__
    with engine.begin() as conn:
        conn.execute(orders.update().values(note='core'))
    assert watch.changed() == {'alkey:orders#10', 'alkey:orders#*'}
    watch = Watch(kg, *USERS, *OTHERS)
    with engine.connect() as conn:
        conn.execute(orders.delete())
        conn.rollback()
    assert watch.changed() == set()
    with engine.connect() as conn:
        conn.execute(User.__table__.update().values(name='k'))
        conn.commit()
        assert watch.changed() == set(USERS)  # at the commit, before close


def test_autocommit_connections_invalidate_at_once(engine, Maker, seeded, kg):
    watch = Watch(kg, *USERS)
    with engine.connect().execution_options(isolation_level='AUTOCOMMIT') as conn:
        conn.execute(User.__table__.update().values(name='auto'))
        assert watch.changed() == set(USERS)


def test_text_sql_in_a_session(Maker, seeded, kg):
    watch = Watch(kg, *USERS, *OTHERS)
    with Maker() as s:
        s.execute(text("UPDATE users SET name = 'txt' WHERE id = 1"))
        s.execute(text('SELECT * FROM orders FOR UPDATE')) if s.bind.dialect.name != 'sqlite' else None
        s.commit()
    assert watch.changed() == set(USERS)
    watch = Watch(kg, *USERS, *OTHERS)
    with Maker() as s:
        s.execute(text('DELETE FROM "orders" WHERE note <> :n'), {'n': 'update users'})
        s.commit()
    assert watch.changed() == {'alkey:orders#10', 'alkey:orders#*'}


def test_core_write_to_a_joined_subclass_table_changes_the_base_identifier(engine, Maker, seeded, kg):
    watch = Watch(kg, 'alkey:employees#20', Engineer)
    with engine.begin() as conn:
        conn.execute(Engineer.__table__.update().values(language='go'))
    assert watch.changed() == {'alkey:employees#20', Engineer}


def test_flushes_do_not_touch_epochs(Maker, seeded, kg):
    watch = Watch(kg, *USERS)
    with Maker() as s:
        s.get(User, 1).name = 'one row'
        s.commit()
    assert watch.changed() == {'alkey:users#1', 'alkey:users#*', User}


@pytest.mark.parametrize('sql, tables', [
    ('UPDATE users SET a = 1', {'users'}),
    ('update "Users" set a=1', {'Users', 'users'}),
    ('INSERT INTO public.users (id) VALUES (1)', {'public.users', 'users'}),
    ('insert or replace into tags values (1)', {'tags'}),
    ('DELETE FROM orders WHERE id IN (SELECT id FROM x)', {'orders'}),
    ('WITH t AS (SELECT 1) UPDATE orders SET note = 1', {'orders'}),
    ('TRUNCATE TABLE users, orders', {'users', 'orders'}),
    ('MERGE INTO users u USING x ON (1=1) WHEN MATCHED THEN UPDATE SET a=1', {'users'}),
    ('SELECT * FROM users FOR UPDATE', set()),
    ('SELECT * FROM users FOR NO KEY UPDATE', set()),
    ("SELECT 'delete from users' AS s -- update orders", set()),
    ('INSERT INTO t VALUES (1) ON CONFLICT (id) DO UPDATE SET a = 1', {'t'}),
    ('SELECT replace(name, 1, 2) FROM users', set()),
    ('CALL do_things()', set()),
    ('UPDATE', {'*'}),
])
def test_text_sql_targets(sql, tables):
    out = {}
    _dml.text_targets(sql, out)
    found = set()
    for oid in out:
        if oid.endswith('#*') and oid != GLOBAL_WRITE_TOKEN:
            found.add(_unescape(oid[len('alkey:'):-2]))
    if 'alkey:*#!' in out:
        found.add('*')
    assert found == tables


def _unescape(name):
    from alkey.utils import unpack_object_id
    return unpack_object_id(f'alkey:{name}#*')[0]


def test_legacy_query_update_and_delete(Maker, seeded, kg):
    watch = Watch(kg, *USERS, *OTHERS)
    with Maker() as s:
        s.query(User).filter(User.id == 3).update({'name': 'legacy'})
        s.query(Order).filter(Order.id == 10).delete()
        s.commit()
    assert watch.changed() == {*USERS, 'alkey:orders#10', 'alkey:orders#*'}


def test_unbound_sessions_and_unbind_leave_keys_alone(engine, client, seeded, kg):
    from sqlalchemy.orm import Session
    watch = Watch(kg, *USERS)
    with Session(engine) as s:  # never bound
        s.execute(update(User).values(name='unbound'))
        s.get(User, 1).name = 'unbound too'
        s.commit()
    assert watch.changed() == set()


def test_a_failed_flush_does_not_hide_later_bulk_writes(Maker, seeded, kg):
    watch = Watch(kg, *USERS)
    with Maker() as s:
        sp = s.begin_nested()
        s.add(User(id=1, name='duplicate key'))
        with pytest.raises(Exception):
            s.flush()
        sp.rollback()
        s.execute(update(User).values(name='after the failure'))
        s.commit()
    assert watch.changed() == set(USERS)
