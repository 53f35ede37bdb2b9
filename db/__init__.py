"""Persistence: settings, SQLAlchemy models, sessions, migrations and the users.json importer."""
