"""A local SMTP sink (aiosmtpd): it accepts every email and keeps it as an .eml file in a
folder, where `/_sandbox/mail` and the tests read it. The sandbox's stand-in for a mail relay."""

from __future__ import annotations

import email
import email.policy
import socket
import threading
import time
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller


def _free_port(host: str) -> int:
    with socket.socket() as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]


class _Keeper:
    def __init__(self, folder: Path):
        self.folder = folder
        self.lock = threading.Lock()

    async def handle_DATA(self, server, session, envelope) -> str:
        with self.lock:
            name = f"{time.time_ns()}.eml"
            (self.folder / name).write_bytes(envelope.original_content or envelope.content)
        return "250 Message accepted for delivery"


class MailSink:
    def __init__(self, folder: Path | str, host: str = "127.0.0.1", port: int | None = None):
        self.folder = Path(folder)
        self.host = host
        self.port = port or _free_port(host)
        self.controller: Controller | None = None

    def start(self) -> MailSink:
        self.folder.mkdir(parents=True, exist_ok=True)
        self.controller = Controller(_Keeper(self.folder), hostname=self.host, port=self.port)
        self.controller.start()
        return self

    def stop(self) -> None:
        if self.controller is not None:
            self.controller.stop()
            self.controller = None

    def __enter__(self) -> MailSink:
        return self.start()

    def __exit__(self, *_exc) -> None:
        self.stop()

    def env(self) -> dict[str, str]:
        """What points Clawdet's sender at this sink."""
        return {"SMTP_HOST": self.host, "SMTP_PORT": str(self.port), "SMTP_STARTTLS": "false"}

    def messages(self) -> list[dict[str, Any]]:
        return read_messages(self.folder)


def read_messages(folder: Path | str) -> list[dict[str, Any]]:
    """Every received email, oldest first: headers, the text part and the HTML part."""
    found = []
    for path in sorted(Path(folder).glob("*.eml")):
        message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        text = message.get_body(preferencelist=("plain",))
        html = message.get_body(preferencelist=("html",))
        found.append(
            {
                "id": path.stem,
                "from": str(message["From"]),
                "to": str(message["To"]),
                "subject": str(message["Subject"]),
                "kind": str(message.get("X-Clawdet-Kind", "")),
                "text": text.get_content() if text else "",
                "html": html.get_content() if html else "",
            }
        )
    return found
