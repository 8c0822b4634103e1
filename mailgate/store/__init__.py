"""Persistence: the database engine, the tables, and the repositories that speak core types."""
