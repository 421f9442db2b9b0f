"""The bench's arithmetic: a comparison is made within a round, never across them."""

from itertools import cycle

from bench.run import medians, paired, rounds_of


def test_a_comparison_pairs_the_measures_of_one_round():
    # The machine runs at full speed in one round and half speed in the next, and
    # the empty app happens to be measured at the other speed: the two measures
    # are equal in every round, so their comparison must read 1.00.
    empties = cycle([1000.0, 500.0, 2000.0, 1000.0])
    speeds = iter([1.0, 0.5])
    speed = 1.0

    def measure() -> float:
        nonlocal speed
        speed = next(speeds)
        return 800.0 * speed

    def same() -> float:
        return 800.0 * speed

    seen = rounds_of(2, lambda: next(empties), {"a": measure, "b": same})
    assert paired(seen, "a", "b") == 1.0
    summary = medians(seen)
    assert summary["a"][0] == summary["b"][0] == 600.0
    # Dividing the medians of the ratios to the empty app would read 0.5.
    assert summary["a"][1] / summary["b"][1] == 0.5
