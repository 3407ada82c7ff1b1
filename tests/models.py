"""Mapped classes the tests share: one per kind of primary key."""

from __future__ import annotations

import uuid

from sqlalchemy import ForeignKey, String, Uuid, create_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column


class Base(DeclarativeBase):
    pass


class User(Base):
    __tablename__ = 'users'
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(50))


class Tag(Base):
    __tablename__ = 'tags'
    name: Mapped[str] = mapped_column(String(100), primary_key=True)


class Document(Base):
    __tablename__ = 'documents'
    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    title: Mapped[str] = mapped_column(String(50), default='')


class Membership(Base):
    __tablename__ = 'memberships'
    user_id: Mapped[int] = mapped_column(ForeignKey('users.id'), primary_key=True)
    role: Mapped[str] = mapped_column(String(50), primary_key=True)


def sqlite_session() -> Session:
    """A session on a new in-memory SQLite database with the tables made."""
    engine = create_engine('sqlite://')
    Base.metadata.create_all(engine)
    return Session(engine)
