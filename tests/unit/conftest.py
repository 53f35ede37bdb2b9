import asyncio

import pytest


@pytest.fixture(autouse=True)
def current_event_loop():
    """The Pulumi SDK's mocks ask for the thread's current event loop; an earlier asyncio.run()
    (or Playwright) in this thread leaves none behind."""
    try:
        asyncio.get_event_loop_policy().get_event_loop()
    except RuntimeError:
        asyncio.set_event_loop(asyncio.new_event_loop())
