"""Fault injection rules for the sandboxes (CONTRACTS §5: POST /_sandbox/faults)."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

# Answered instead of the real reply.
BEFORE = frozenset({"429", "500", "502", "503", "timeout", "slow", "vendor-throttle", "auth"})
# The real reply, damaged on the way out.
AFTER = frozenset({"truncate", "bad-json", "reset"})
# A list page with one item repeated or left out.
ITEM = frozenset({"repeat-item", "skip-item"})
# Every token the emulator issued so far expires at once (then the request is answered as usual,
# so it is refused as the vendor refuses an expired token).
EXPIRE = frozenset({"expire-token"})
KINDS = BEFORE | AFTER | ITEM | EXPIRE


class FaultSpecError(ValueError):
    pass


@dataclass
class FaultRule:
    match: str
    fault: str
    times: int = 1
    retry_after: float | None = None
    seconds: float | None = None
    after: int = 0  # matching requests to let through untouched before the fault starts

    @classmethod
    def parse(cls, data: Any) -> FaultRule:
        if not isinstance(data, dict):
            raise FaultSpecError("a fault is an object with 'match' and 'fault'")
        unknown = set(data) - {"match", "fault", "times", "retry_after", "seconds", "after"}
        if unknown:
            raise FaultSpecError(f"unknown fault keys: {sorted(unknown)}")
        fault = str(data.get("fault", ""))
        if fault not in KINDS:
            raise FaultSpecError(f"unknown fault {fault!r}; one of {sorted(KINDS)}")
        match = str(data.get("match", "*"))
        times = data.get("times", 1)
        if not isinstance(times, int) or times < 1:
            raise FaultSpecError("'times' must be a positive integer")
        after = data.get("after", 0)
        if not isinstance(after, int) or isinstance(after, bool) or after < 0:
            raise FaultSpecError("'after' must be a non-negative integer")
        retry_after = data.get("retry_after")
        seconds = data.get("seconds")
        for name, value in (("retry_after", retry_after), ("seconds", seconds)):
            if value is not None and (not isinstance(value, int | float) or value < 0):
                raise FaultSpecError(f"'{name}' must be a non-negative number")
        return cls(match, fault, times, retry_after, seconds, after)

    def applies_to(self, method: str, path: str, is_write: bool, is_list: bool, named_only: bool = False) -> bool:
        if self.fault in ITEM and not is_list:
            return False
        if named_only and self.match in ("*", "reads", "writes"):
            return False
        if self.match == "*":
            return True
        if self.match == "reads":
            return not is_write
        if self.match == "writes":
            return is_write
        want_method, _, prefix = self.match.partition(" ")
        return method.upper() == want_method.upper() and path.startswith(prefix or "/")


class FaultBook:
    """The active rules; `take` consumes one firing of the first rule that applies."""

    def __init__(self) -> None:
        self._rules: list[FaultRule] = []
        self._lock = threading.Lock()
        self.fired = 0

    def add(self, rule: FaultRule) -> None:
        with self._lock:
            self._rules.append(rule)

    def clear(self) -> None:
        with self._lock:
            self._rules.clear()

    def take(
        self, method: str, path: str, is_write: bool, is_list: bool, *, named_only: bool = False
    ) -> FaultRule | None:
        """`named_only`: only a rule whose match names this request's method and path (a token
        endpoint is not one of the API's reads or writes)."""
        with self._lock:
            for rule in self._rules:
                if rule.applies_to(method, path, is_write, is_list, named_only):
                    if rule.after > 0:
                        rule.after -= 1
                        continue
                    rule.times -= 1
                    if rule.times <= 0:
                        self._rules.remove(rule)
                    self.fired += 1
                    return rule
        return None

    def pending(self) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(vars(rule)) for rule in self._rules]
