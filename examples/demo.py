"""alkey in a few lines of output: `make demo`.

Uses $REDIS_URL when set; otherwise starts a throwaway redis-server on a
free port.  The rows live in a SQLite database in a temporary directory.
"""

from __future__ import annotations

import os
import tempfile

from sqlalchemy import String, create_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from redis_url import redis_url


class Base(DeclarativeBase):
    pass


class User(Base):
    __tablename__ = 'users'
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(50))


def main() -> None:
    with tempfile.TemporaryDirectory(prefix='alkey-demo-') as tmp, \
            redis_url('demo') as url:
        os.environ['REDIS_URL'] = url
        run(url, tmp)


def run(url: str, tmp: str) -> None:
    from sqlalchemy import update
    from sqlalchemy.orm import sessionmaker

    from alkey import events
    from alkey.cache import get_cache_key_generator
    from alkey.client import get_redis_client
    from alkey.utils import get_object_id

    engine = create_engine(f'sqlite:///{tmp}/demo.db')
    Base.metadata.create_all(engine)
    Session = sessionmaker(engine)
    events.bind(Session)  # the one line that turns alkey on

    with Session() as session:
        session.add_all([User(id=1, name='ann'), User(id=2, name='bob')])
        session.commit()

    key_for = get_cache_key_generator()
    print(f'Redis: {get_redis_client()!r}')
    with Session() as session:
        ann, bob = session.get(User, 1), session.get(User, 2)
        print(f'identifier of ann:         {get_object_id(ann)}')
        print(f'key for ann + "profile":   {key_for(ann, "profile")}')
        print(f'the same key again:        {key_for(ann, "profile")}')
        print(f'key for bob + "profile":   {key_for(bob, "profile")}')
        print(f'key for the users table:   {key_for(User)}')

        ann.name = 'Ann'
        session.commit()
        print('-- committed a change to ann --')
        print(f'key for ann + "profile":   {key_for(ann, "profile")}  (changed)')
        print(f'key for bob + "profile":   {key_for(bob, "profile")}  (unchanged)')
        print(f'key for the users table:   {key_for(User)}  (changed)')

        before = key_for(bob, 'profile')
        bob.name = 'Robert'
        session.flush()
        session.rollback()
        print('-- changed bob, flushed, rolled back --')
        print(f'key for bob + "profile":   {key_for(bob, "profile")}  '
              f'({"unchanged" if key_for(bob, "profile") == before else "CHANGED"})')

        session.execute(update(User).values(name='everyone'))
        session.commit()
        print('-- a bulk UPDATE of every user, committed --')
        print(f'key for bob + "profile":   {key_for(bob, "profile")}  (changed)')

    hashed = get_cache_key_generator(hash_keys=True)
    with Session() as session:
        print(f'hashed key for ann:        {hashed(session.get(User, 1), "profile")}')


if __name__ == '__main__':
    main()
