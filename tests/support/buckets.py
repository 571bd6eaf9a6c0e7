"""Buckets of the integration tests, through boto3 directly (setting up and tearing down is not
the code under test)."""

from __future__ import annotations

import time
from typing import Any


def empty_and_delete(s3: Any, bucket: str, wait_s: float = 90) -> None:
    """Delete every version (GOVERNANCE bypassed; COMPLIANCE waited for) and the bucket."""
    deadline = time.monotonic() + wait_s
    while True:
        listed = s3.list_object_versions(Bucket=bucket)
        targets = [
            {"Key": v["Key"], "VersionId": v["VersionId"]}
            for v in [*listed.get("Versions", []), *listed.get("DeleteMarkers", [])]
        ]
        refused = []
        for start in range(0, len(targets), 1000):
            answer = s3.delete_objects(
                Bucket=bucket,
                Delete={"Objects": targets[start : start + 1000], "Quiet": True},
                BypassGovernanceRetention=True,
            )
            refused += answer.get("Errors", [])
        if not refused:
            s3.delete_bucket(Bucket=bucket)
            return
        assert time.monotonic() < deadline, f"{bucket}: still retained: {refused[:3]}"
        time.sleep(2)
