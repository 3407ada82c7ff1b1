"""The blog's tables, its scoped session and the database set-up."""

from __future__ import annotations

import transaction
import zope.sqlalchemy
from sqlalchemy import String, Text, engine_from_config, func, select
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, scoped_session, sessionmaker

__all__ = ['Base', 'Post', 'Session', 'setup_database']

#: The session alkey binds (the setting ``alkey.session_cls``).  pyramid_tm
#: commits it at the end of each request through zope.sqlalchemy.
Session = scoped_session(sessionmaker())
zope.sqlalchemy.register(Session)


class Base(DeclarativeBase):
    pass


class Post(Base):
    __tablename__ = 'posts'

    id: Mapped[int] = mapped_column(primary_key=True)
    title: Mapped[str] = mapped_column(String(200))
    body: Mapped[str] = mapped_column(Text)

    @property
    def summary(self) -> str:
        first = self.body.split('\n\n', 1)[0]
        return first if len(first) <= 160 else first[:157].rstrip() + '...'


SEED = [
    ('Cache keys that change by themselves',
     'A key names the rows it shows. When a commit changes one of them, '
     'the key changes, and the old fragment is never read again.\n\n'
     'Edit this post and watch its fragment render again, alone.'),
    ('Fragments in Redis',
     "Mako's <%page cached=\"True\"/> and <%def cached=\"True\"> store "
     'the rendered HTML in Redis through alkey\'s cache plugin.'),
    ('Nothing to invalidate',
     'Nobody writes invalidation code: the commit replaces the tokens of '
     'what it changed, in one round trip.'),
]


def setup_database(settings: dict) -> object:
    """Connect the session to ``sqlalchemy.url``, create the tables and
    the first posts.  Runs after alkey has bound the session, so the posts
    it adds replace their tokens like any other commit."""
    engine = engine_from_config(settings, 'sqlalchemy.')
    Session.remove()
    Session.configure(bind=engine)
    Base.metadata.create_all(engine)
    with transaction.manager:
        if not Session.scalar(select(func.count()).select_from(Post)):
            Session.add_all(Post(title=title, body=body) for title, body in SEED)
    return engine
