"""A shop: sign-up and login (a password hash and a bearer token), a catalogue, orders.

A FastAPI + SQLModel app written as their docs write apps: a module-level engine and
``Session(engine)`` in a dependency.
"""
