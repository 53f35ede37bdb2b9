"""The suite's fixtures live in tests/fixtures/, one module per area, registered here."""

pytest_plugins = [
    "tests.fixtures.database",
    "tests.fixtures.browser",
    "tests.fixtures.sandbox",
    "tests.fixtures.provisioning",
    "tests.fixtures.llm",
    "tests.fixtures.ops",
    "tests.fixtures.pulumi_mocks",
    "tests.fixtures.backups",
]
