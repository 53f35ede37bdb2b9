"""Shared pieces of the operations tests: an SMTP sink, settings pointing at it, an admin."""
from __future__ import annotations

import dataclasses

import pytest

from db.models import Role, User
from sandbox.mail_sink import MailSink
from tests.conftest import register


@pytest.fixture
def mail_sink(tmp_path):
    with MailSink(tmp_path / "mail") as sink:
        yield sink


def with_sink(settings, sink: MailSink, **changes):
    return dataclasses.replace(settings, smtp_host=sink.host, smtp_port=sink.port, smtp_starttls=False,
                               **changes)


def make_admin(database, client, email="root@example.com", password="admin password 1"):
    user = register(client, email=email, password=password, name="Root")
    with database.session() as session:
        session.get(User, user["id"]).role = Role.ADMIN.value
    return user
