from datetime import UTC, datetime

from jobrelay.errors import Fatal, Retry
from jobrelay.faults import describe, fingerprint, mask

AT = datetime(2026, 1, 1, tzinfo=UTC)


def raise_and_describe(exc: BaseException, secrets: tuple[str, ...] = ()):  # type: ignore[no-untyped-def]
    try:
        raise exc
    except BaseException as caught:
        return describe(caught, job_type="t", attempt=1, at=AT, secrets=secrets)


def test_same_cause_with_different_ids_shares_a_fingerprint() -> None:
    a = raise_and_describe(KeyError("user 1234 missing in 'orders/abc'"))
    b = raise_and_describe(KeyError("user 98 missing in 'orders/xyz'"))
    c = raise_and_describe(ValueError("user 98 missing in 'orders/xyz'"))
    assert a.fingerprint == b.fingerprint != c.fingerprint


def test_secrets_never_reach_message_or_stack() -> None:
    info = raise_and_describe(RuntimeError("login failed with password hunter22!"), secrets=("hunter22!",))
    assert "hunter22!" not in info.message and "hunter22!" not in info.stack
    assert "***" in info.message


def test_fatal_is_not_retryable_and_retry_is() -> None:
    assert raise_and_describe(Fatal("no")).retryable is False
    assert raise_and_describe(Retry("later", delay=3)).retryable is True
    assert raise_and_describe(RuntimeError("x")).retryable is True


def test_message_and_stack_are_trimmed_keeping_the_end() -> None:
    info = raise_and_describe(RuntimeError("detail " * 2000 + "THE END"))
    assert len(info.message) == 2000
    assert len(info.stack) <= 4010 and info.stack.startswith("...") and "THE END" in info.stack


def test_mask_ignores_short_values() -> None:
    assert mask("a b c", ["a"]) == "a b c"
    assert fingerprint("t", "E", "x 1") == fingerprint("t", "E", "x 2")
