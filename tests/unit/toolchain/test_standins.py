"""Which stand-in plugins a toolchain run builds: the missing ones, and stale ones."""

from dataclasses import dataclass
from pathlib import Path

from toolchain import standins

VERSIONS = {"pulumi": "3.259.0", "hcloud": "1.39.1", "cloudflare": "6.17.0", "command": "1.2.1"}


@dataclass
class FakeToolchain:
    home: Path
    versions: dict

    def plugin_dir(self, name: str) -> Path:
        return self.home / f"resource-{name}-v{self.versions[name]}"

    def has_plugin(self, name: str) -> bool:
        return (self.plugin_dir(name) / f"pulumi-resource-{name}").is_file()


def install(tc: FakeToolchain, name: str, marker: str | None) -> None:
    tc.plugin_dir(name).mkdir(parents=True)
    (tc.plugin_dir(name) / f"pulumi-resource-{name}").write_text("binary")
    if marker is not None:
        (tc.plugin_dir(name) / standins.MARKER).write_text(marker)


def test_missing_plugins_are_wanted(tmp_path):
    assert standins.wanted_standins(FakeToolchain(tmp_path, VERSIONS)) == ["hcloud", "cloudflare", "command"]


def test_a_stand_in_built_from_older_source_is_rebuilt_and_a_current_one_is_not(tmp_path):
    tc = FakeToolchain(tmp_path, VERSIONS)
    current = standins._source_digest(VERSIONS)
    install(tc, "hcloud", f"stand-in\ndigest: {current}\n")
    install(tc, "cloudflare", "stand-in\ndigest: 0000\n")
    install(tc, "command", f"stand-in\ndigest: {current}\n")
    assert standins.wanted_standins(tc) == ["cloudflare"]
    assert standins.wanted_standins(tc, force=True) == ["hcloud", "cloudflare", "command"]


def test_a_real_plugin_is_never_replaced(tmp_path):
    tc = FakeToolchain(tmp_path, VERSIONS)
    install(tc, "hcloud", None)  # no marker: the real provider
    install(tc, "cloudflare", None)
    install(tc, "command", None)
    assert standins.wanted_standins(tc, force=True) == []


def test_the_digest_covers_the_command_plugin_and_its_pin():
    assert (standins.SOURCE / "cmd" / "pulumi-resource-command" / "main.go").is_file()
    bumped = {**VERSIONS, "command": "1.2.2"}
    assert standins._source_digest(bumped) != standins._source_digest(VERSIONS)
