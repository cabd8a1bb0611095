"""Key ranges used to prune files: split at the widest gaps, never losing a key."""

from __future__ import annotations

from lakehouse.apply.pruning import key_ranges


def test_clustered_updates_and_far_inserts_become_two_ranges():
    keys = [*range(500, 600), *range(10_000, 10_010)]
    assert key_ranges(keys, max_ranges=16) == [(500, 599), (10_000, 10_009)]


def test_at_most_max_ranges_and_every_key_is_covered():
    keys = list(range(0, 1000, 10))
    ranges = key_ranges(keys, max_ranges=4)
    assert len(ranges) == 4
    assert all(any(lo <= k <= hi for lo, hi in ranges) for k in keys)


def test_string_keys_get_one_min_max_range():
    assert key_ranges(["DV-1", "DV-2", "DV-9"]) == [("DV-1", "DV-9")]


def test_no_keys_no_ranges():
    assert key_ranges([]) == []
