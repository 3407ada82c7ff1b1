"""Mapped classes the tests share: one per kind of primary key."""

from __future__ import annotations

import uuid
from typing import Optional

from sqlalchemy import Column, ForeignKey, String, Table, Uuid, create_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, relationship


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


class Order(Base):
    """Points to a user through a foreign key and a many-to-one."""
    __tablename__ = 'orders'
    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[Optional[int]] = mapped_column(ForeignKey('users.id'))
    note: Mapped[str] = mapped_column(String(50), default='')
    user: Mapped[Optional[User]] = relationship()


class Item(Base):
    """Child of a tag (string key) known only through Tag.items."""
    __tablename__ = 'items'
    id: Mapped[int] = mapped_column(primary_key=True)
    tag_name: Mapped[Optional[str]] = mapped_column(ForeignKey('tags.name'))


Tag.items = relationship(Item)


class Employee(Base):
    """Joined-table inheritance root."""
    __tablename__ = 'employees'
    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(20))
    name: Mapped[str] = mapped_column(String(50), default='')
    __mapper_args__ = {'polymorphic_on': 'kind', 'polymorphic_identity': 'employee'}


class Engineer(Employee):
    __tablename__ = 'engineers'
    id: Mapped[int] = mapped_column(ForeignKey('employees.id'), primary_key=True)
    language: Mapped[str] = mapped_column(String(20), default='')
    __mapper_args__ = {'polymorphic_identity': 'engineer'}


class Animal(Base):
    """Single-table inheritance root."""
    __tablename__ = 'animals'
    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(20))
    name: Mapped[str] = mapped_column(String(50), default='')
    __mapper_args__ = {'polymorphic_on': 'kind', 'polymorphic_identity': 'animal'}


class Dog(Animal):
    __mapper_args__ = {'polymorphic_identity': 'dog'}


group_members = Table(
    'group_members', Base.metadata,
    Column('group_id', ForeignKey('groups.id'), primary_key=True),
    Column('user_id', ForeignKey('users.id'), primary_key=True),
)


class Group(Base):
    """Many-to-many with users through group_members."""
    __tablename__ = 'groups'
    id: Mapped[int] = mapped_column(primary_key=True)
    members: Mapped[list[User]] = relationship(secondary=group_members)
