"""Create (or update) the SASL_SSL listener's SCRAM-SHA-512 `admin` user, then log in with it.

Run by scripts/stack-up.sh once the broker answers. The user is made through the PLAINTEXT
listener, where everyone is a super user; `admin` is one of the broker's `super.users`. A stack
started before the SASL_SSL listener existed gets a warning and a hint to restart it.
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
from pathlib import Path
from typing import Any

from wait_for_stack import load_env


def upsert_admin(user: str, password: str) -> None:
    from confluent_kafka.admin import (
        AdminClient,
        ScramCredentialInfo,
        ScramMechanism,
        UserScramCredentialUpsertion,
    )

    admin = AdminClient({"bootstrap.servers": os.environ["KBACKUP_KAFKA_BOOTSTRAP_SERVERS"], "log_level": 0})
    upsertion = UserScramCredentialUpsertion(
        user, ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, 8192), password.encode()
    )
    admin.alter_user_scram_credentials([upsertion], request_timeout=30)[user].result(timeout=30)


def sasl_login_error(user: str, password: str) -> str | None:
    """None when a metadata request as `user` over SASL_SSL succeeds, else what went wrong."""
    from confluent_kafka import KafkaError
    from confluent_kafka.admin import AdminClient

    errors: list[KafkaError] = []
    config: dict[str, Any] = {
        "bootstrap.servers": os.environ["KBACKUP_STACK_SASL_BOOTSTRAP"],
        "security.protocol": "SASL_SSL",
        "sasl.mechanisms": "SCRAM-SHA-512",
        "sasl.username": user,
        "sasl.password": password,
        "ssl.ca.location": os.environ["KBACKUP_STACK_CA_FILE"],
        "error_cb": errors.append,
        "log_level": 0,
    }
    admin = AdminClient(config)
    for _ in range(30):
        try:
            admin.list_topics(timeout=1)
            return None
        except Exception:  # noqa: BLE001 - ask again; the reason is in `errors`
            admin.poll(0)
            if any(e.code() in (KafkaError._AUTHENTICATION, KafkaError._SSL) for e in errors):
                break
    return str(errors[-1]) if errors else "no answer within 30 s"


def listening(address: str) -> bool:
    host, port = address.rsplit(":", 1)
    try:
        with socket.create_connection((host, int(port)), timeout=2):
            return True
    except OSError:
        return False


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--env", type=Path, required=True)
    args = parser.parse_args()
    load_env(args.env)
    user = os.environ["KBACKUP_STACK_SASL_ADMIN_USER"]
    password = os.environ["KBACKUP_STACK_SASL_ADMIN_PASSWORD"]
    address = os.environ["KBACKUP_STACK_SASL_BOOTSTRAP"]
    if not listening(address):
        print(
            f"stack: warning: nothing listens on {address} (SASL_SSL): this broker was started before the "
            "listener existed; restart the stack (make down && make up) to get it",
            file=sys.stderr,
        )
        return 0
    upsert_admin(user, password)
    error = sasl_login_error(user, password)
    if error is not None:
        print(f"stack: SASL_SSL login as {user!r} at {address} failed: {error}", file=sys.stderr)
        return 1
    print(f"stack: SASL_SSL answers on {address} (SCRAM-SHA-512 user {user!r})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
