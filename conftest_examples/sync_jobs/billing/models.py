"""Customers, their monthly invoices and the periods already closed."""

from __future__ import annotations

from sqlalchemy import ForeignKey, String, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


class Customer(Base):
    __tablename__ = "customer"

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(100), unique=True)
    monthly_fee: Mapped[int]  # in cents; 0 for the free plan


class Invoice(Base):
    __tablename__ = "invoice"
    __table_args__ = (UniqueConstraint("customer_id", "period"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customer.id"))
    period: Mapped[str] = mapped_column(String(7))  # "2024-05"
    amount: Mapped[int]


class ClosedPeriod(Base):
    __tablename__ = "closed_period"

    period: Mapped[str] = mapped_column(String(7), primary_key=True)
