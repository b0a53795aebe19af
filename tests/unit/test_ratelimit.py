from hypothesis import given, settings
from hypothesis import strategies as st

from connectors.ratelimit import SlidingWindowLimiter, Window


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def _times(windows: list[Window], requests: int, gaps: list[float]) -> list[float]:
    clock = FakeClock()
    limiter = SlidingWindowLimiter(windows, clock=clock, sleep=clock.sleep)
    sent = []
    for i in range(requests):
        clock.now += gaps[i % len(gaps)]
        limiter.acquire()
        sent.append(clock.now)
    return sent


@settings(max_examples=60, deadline=None)
@given(
    windows=st.lists(
        st.builds(Window, st.integers(1, 6), st.floats(0.1, 5.0, allow_nan=False)), min_size=1, max_size=3
    ),
    gaps=st.lists(st.floats(0, 0.5, allow_nan=False), min_size=1, max_size=5),
)
def test_no_window_ever_holds_more_than_its_limit(windows: list[Window], gaps: list[float]) -> None:
    sent = _times(windows, 40, gaps)
    for window in windows:
        for i in range(len(sent) - window.requests):
            # request i and request i+N can never both sit inside one window
            assert sent[i + window.requests] - sent[i] >= window.per_seconds - 1e-9


def test_uses_the_whole_allowance_when_busy() -> None:
    # 5 per second, 20 requests back to back: 4 full windows, no slack beyond them
    sent = _times([Window(5, 1.0)], 20, [0.0])
    assert sent[-1] == 3.0
    assert sent[:5] == [0.0] * 5


def test_tightest_window_governs() -> None:
    # Silvasoft-like: 2 per second and 5 per minute; the minute window decides after 5 requests
    sent = _times([Window(2, 1.0), Window(5, 60.0)], 6, [0.0])
    assert sent[5] >= 60.0


def test_try_acquire_reports_the_wait_without_taking_a_slot() -> None:
    clock = FakeClock()
    limiter = SlidingWindowLimiter([Window(2, 1.0)], clock=clock, sleep=clock.sleep)
    assert limiter.try_acquire() == 0.0
    assert limiter.try_acquire() == 0.0
    assert limiter.try_acquire() == 1.0
    clock.now = 0.4
    assert abs(limiter.try_acquire() - 0.6) < 1e-9
    assert limiter.remaining() == 0
    clock.now = 1.0
    assert limiter.remaining() == 2


def test_a_slot_counts_from_the_moment_its_answer_is_back() -> None:
    # The vendor counted each request somewhere between sending and answering: pacing from the
    # answer keeps its window whole however late the request left.
    clock = FakeClock()
    limiter = SlidingWindowLimiter([Window(2, 1.0)], clock=clock, sleep=clock.sleep)
    _, first = limiter.reserve()
    _, second = limiter.reserve()
    clock.now = 0.3
    limiter.settle(first)
    limiter.settle(second)
    assert limiter.acquire() == 1.0  # from 0.3, when the answers came back
    assert clock.now == 1.3
