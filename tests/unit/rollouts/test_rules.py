"""The pure parts of rollouts: waves, the failure budget, cohorts, versions, previews in a word."""

import pytest

from clawdet.rollouts.cohort import Cohort
from clawdet.rollouts.waves import assign, check_percentages, over_budget
from programs import openclaw


@pytest.mark.parametrize(
    ("count", "canary", "sizes"),
    [
        (20, 1, {0: 1, 2: 1, 3: 3, 4: 5, 5: 10}),  # 1 % of 20 is the canary already
        (200, 1, {0: 1, 1: 1, 2: 18, 3: 30, 4: 50, 5: 100}),
        (1, 1, {0: 1}),
        (3, 0, {1: 1, 4: 1, 5: 1}),
        (2, 5, {0: 2}),  # never more canaries than members
        (0, 1, {}),
    ],
)
def test_waves_are_cumulative_percentages_after_the_canary(count, canary, sizes):
    waves = assign(count, canary, (1, 10, 25, 50, 100))
    assert len(waves) == count and waves == sorted(waves)
    assert {w: waves.count(w) for w in set(waves)} == sizes


@pytest.mark.parametrize("bad", [(), (10, 50), (50, 10, 100), (0, 100), (10, 10, 100)])
def test_wave_percentages_must_rise_to_100(bad):
    with pytest.raises(ValueError):
        check_percentages(bad)


@pytest.mark.parametrize(
    ("canary_failed", "failed", "finished", "halts"),
    [
        (True, 1, 1, True),
        (False, 0, 5, False),
        (False, 1, 20, False),
        (False, 2, 20, True),
        (False, 1, 10, True),
    ],
)
def test_the_budget_halts_on_a_canary_failure_or_above_its_share(canary_failed, failed, finished, halts):
    assert (
        over_budget(canary_failed=canary_failed, failed=failed, finished=finished, budget_percent=5) is halts
    )


@pytest.mark.parametrize(
    ("text", "kind", "values"),
    [
        ("unpinned", "unpinned", ()),
        ("all", "all", ()),
        ("tier:pro", "tier", ("pro",)),
        ("list:A, b", "list", ("a", "b")),
    ],
)
def test_cohorts_parse(text, kind, values):
    assert Cohort.parse(text) == Cohort(kind, values)


@pytest.mark.parametrize("bad", ["everyone", "tier:", "tier:gold", "list:"])
def test_a_bad_cohort_is_refused_in_words(bad):
    with pytest.raises(ValueError, match=r"cohort|tier"):
        Cohort.parse(bad)


def test_a_version_becomes_the_official_image_and_back():
    image = openclaw.image_for("2026.9.7")
    assert image == "ghcr.io/openclaw/openclaw:2026.9.7" and openclaw.version_of(image) == "2026.9.7"
    assert openclaw.image_for("registry.example/openclaw:1.2") == "registry.example/openclaw:1.2"


@pytest.mark.parametrize(
    ("changes", "word"),
    [
        ({}, "no change"),
        ({"command:remote:CopyToRemote": {"update"}, "command:remote:Command": {"update"}}, "update"),
        ({"hcloud:index/firewall:Firewall": {"update"}, "command:remote:Command": {"update"}}, "update"),
        ({"hcloud:index/server:Server": {"create-replacement", "replace"}}, "replace"),
        ({"hcloud:index/server:Server": {"create"}, "command:remote:Command": {"update"}}, "drifted"),
    ],
)
def test_a_preview_reads_as_one_word(changes, word):
    from clawdet.rollouts.plan import classify

    assert classify(changes)[0] == word
