"""An update that would replace the server of an instance whose data is on that server's disk is
refused before the engine runs (instances made before data volumes)."""

import pytest

from clawdet.reconciler.reconciler import SERVER_TYPE, VOLUME_TYPE, Reconciler, Refused


class FakeStacks:
    def __init__(self, types: list[str], replaces: bool):
        self.types, self.replaces, self.previews = types, replaces, 0

    def resources(self, name):
        return [{"type": t, "id": "1"} for t in self.types]

    def planned(self, name, config):
        self.previews += 1
        return {SERVER_TYPE: {"replace"}} if self.replaces else {"command:remote:Command": {"update"}}


def reconciler_with(stacks: FakeStacks) -> Reconciler:
    reconciler = Reconciler.__new__(Reconciler)  # only the stacks matter for this decision
    reconciler.stacks = stacks
    return reconciler


def test_a_replacement_without_a_volume_is_refused():
    with pytest.raises(Refused, match="own disk"):
        reconciler_with(FakeStacks([SERVER_TYPE], replaces=True)).keep_the_data_safe(
            "i", "n", {}, rebuild=False
        )


@pytest.mark.parametrize("rebuild", [True, False])
def test_rebuild_is_refused_too_and_an_in_place_change_is_not(rebuild):
    stacks = FakeStacks([SERVER_TYPE], replaces=False)
    if rebuild:
        with pytest.raises(Refused):
            reconciler_with(stacks).keep_the_data_safe("i", "n", {}, rebuild=True)
        assert stacks.previews == 0  # a rebuild replaces by definition: no preview needed
    else:
        reconciler_with(stacks).keep_the_data_safe("i", "n", {}, rebuild=False)
        assert stacks.previews == 1


def test_nothing_to_protect_before_the_first_server():
    reconciler_with(FakeStacks([VOLUME_TYPE], replaces=True)).keep_the_data_safe("i", "n", {}, rebuild=True)


def test_pausing_without_a_volume_is_refused_without_a_preview():
    stacks = FakeStacks([SERVER_TYPE], replaces=False)
    with pytest.raises(Refused, match="own disk"):
        reconciler_with(stacks).keep_the_data_safe("i", "n", {}, rebuild=False, removing=True)
    assert stacks.previews == 0
