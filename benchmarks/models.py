"""The mapped classes the benchmarks use, each on a base of its own."""

from __future__ import annotations

from sqlalchemy import Integer, String
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

__all__ = ['BenchRow', 'RowBase', 'User', 'UserBase']


class UserBase(DeclarativeBase):
    pass


class User(UserBase):
    """Instances for cache keys: ``alkey:users#<id>``."""
    __tablename__ = 'users'
    id: Mapped[int] = mapped_column(Integer, primary_key=True)


class RowBase(DeclarativeBase):
    pass


class BenchRow(RowBase):
    """The rows the commit benchmark changes (made and dropped by it)."""
    __tablename__ = 'alkey_bench_users'
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(50))
    counter: Mapped[int] = mapped_column(Integer)
