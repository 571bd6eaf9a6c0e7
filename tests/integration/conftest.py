"""Fixtures of the integration tests that reach the secured side of a stack: connection variables
for one test, and the access-rule tests' stack and what they made there."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator

import pytest

from tests.support.access import Made
from tests.support.secure import SecureStack


@pytest.fixture
def use_env(monkeypatch: pytest.MonkeyPatch) -> Callable[..., None]:
    """use_env(env, ...): these connection variables (and no other KBACKUP_KAFKA_*) for this test."""
    for name in list(os.environ):
        if name.startswith("KBACKUP_KAFKA_"):
            monkeypatch.delenv(name)

    def apply(*envs: dict[str, str]) -> None:
        for env in envs:
            for name, value in env.items():
                monkeypatch.setenv(name, value)

    return apply


@pytest.fixture
def access_stack(
    request: pytest.FixtureRequest, stack_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> SecureStack:
    """The shared stack's secured side when it has one (`.stack/env` names its SASL_SSL listener),
    else the session's own stack, which then serves the whole test (PLAINTEXT and S3 included)."""
    if stack_env.get("KBACKUP_STACK_SASL_BOOTSTRAP"):
        secure = SecureStack(dict(stack_env))
    else:
        secure = request.getfixturevalue("secure")
        for name, value in {
            "KBACKUP_KAFKA_BOOTSTRAP_SERVERS": secure.env["KBACKUP_KAFKA_BOOTSTRAP_SERVERS"],
            **secure.s3_env("admin"),
        }.items():
            monkeypatch.setenv(name, value)
    secure.ensure_bucket()
    return secure


@pytest.fixture
def made(access_stack: SecureStack) -> Iterator[Made]:
    """What the test makes on `access_stack`, removed at its end."""
    things = Made(access_stack)
    yield things
    things.remove()
