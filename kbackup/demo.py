"""The demo: the seed's scenarios end to end on the local stack, through the Prefect deployments.

1. create `sales` (JSON values, year in the key, product_category in the value, region in a
   header) and `payments` topics with records;
2. run the `backup` deployment with the seed's KCQL and list what landed in the bucket;
3. run the `restore` deployment into new topics;
4. compare the records digests of source and restored topics;
5. print the status of the demo's backups per topic (`kbackup status`: restore point, its age,
   newest record, lag, last drill);
6. leave the Prefect UI running with both runs visible.
"""

from __future__ import annotations

import json
import os
import random
import sys
import time
import uuid
from typing import Any, cast

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from kbackup.console import human_bytes, table
from tasks.restore.check import read_restored
from tasks.services.errors import BucketNotFoundError
from tasks.services.kafka.clients import client_config
from tasks.services.object_store import ObjectStore, open_store

BUCKET = "demo-backups"
REGIONS = ["EMEA", "APAC", "AMER"]
CATEGORIES = ["Electronics", "Books", "Garden", "Toys"]


def _create(admin: AdminClient, name: str, partitions: int) -> None:
    if name not in admin.list_topics(timeout=10).topics:
        admin.create_topics([NewTopic(name, partitions, 1)])[name].result(30)


def _produce_seed_data(config: dict[str, Any], sales: str, payments: str, count: int) -> None:
    rng = random.Random()
    producer = Producer({**config, "enable.idempotence": True, "linger.ms": 10})
    for i in range(count):
        year = rng.choice([2023, 2024, 2025])
        producer.produce(
            sales,
            key=json.dumps({"year": year, "order": str(uuid.uuid4())}).encode(),
            value=json.dumps(
                {"product_category": rng.choice(CATEGORIES), "amount": round(rng.uniform(1, 500), 2)}
            ).encode(),
            headers=[("region", rng.choice(REGIONS).encode()), ("source", b"demo")],
        )
        producer.produce(
            payments,
            key=f"customer-{rng.randint(1, 50)}".encode(),
            value=rng.randbytes(rng.randint(20, 200)) if i % 10 else None,
            headers=[("trace", uuid.uuid4().bytes)],
        )
        if i % 1000 == 0:
            producer.poll(0)
    producer.flush(30)


def topic_digest(config: dict[str, Any], topic: str) -> tuple[int, dict[int, str]]:
    """Records and per-partition digests of a whole topic, read as the restore's check reads."""
    consumer = Consumer({**config, "group.id": f"demo-digest-{uuid.uuid4()}"})
    try:
        partitions = list(consumer.list_topics(topic, timeout=10).topics[topic].partitions)
        lows = {
            p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[0] for p in partitions
        }
    finally:
        consumer.close()
    count = 0
    digests = {}
    for partition, low in lows.items():
        records, digest, _, _ = read_restored(config, topic, partition, low, None)
        count += records
        digests[partition] = digest
    return count, digests


def _run_deployment(name: str, parameters: dict[str, Any]) -> Any:
    from prefect.client.schemas.objects import FlowRun
    from prefect.deployments import run_deployment

    print(f"→ running deployment {name} …", flush=True)
    # run_deployment dispatches on the calling context and is typed `FlowRun | Coroutine[..., FlowRun]`;
    # called here outside any event loop, it runs synchronously and returns the FlowRun.
    run = cast(FlowRun, run_deployment(name, parameters=parameters, timeout=900))
    state = run.state
    if state is None:
        raise SystemExit(f"deployment {name}: flow run {run.name} has no state")
    print(f"  {run.name}: {state.name}", flush=True)
    if not state.is_completed():
        raise SystemExit(f"deployment {name} ended {state.name}: {state.message}")
    return run


def print_status(store: ObjectStore, prefixes: tuple[str, ...]) -> None:
    """`kbackup status` of the demo's prefixes, in one table."""
    from layout.status import status_rows
    from tasks.backup.status import read_status

    rows = [
        {"prefix": f"s3://{BUCKET}/{prefix}", **row}
        for prefix in prefixes
        for row in status_rows(read_status(store, BUCKET, prefix))
    ]
    print(
        "\nStatus of the demo's backups (kbackup status s3://"
        + BUCKET
        + "/<prefix>; lag bytes are estimated):"
    )
    print(table(rows))


def run_demo() -> int:
    config = client_config()
    admin = AdminClient(config)
    store = open_store()
    suffix = os.environ.get("KBACKUP_DEMO_SUFFIX", time.strftime("%H%M%S"))
    sales, payments = "sales", "payments"
    _create(admin, sales, 3)
    _create(admin, payments, 3)
    try:
        store.check_bucket(BUCKET)
    except BucketNotFoundError:
        store.create_bucket(BUCKET)
    _produce_seed_data(config, sales, payments, 3000)
    print(f"Produced 3,000 records to each of {sales!r} and {payments!r}.")

    backup_kcql = (
        f"INSERT INTO {BUCKET}:payments SELECT * FROM payments STOREAS AVRO PROPERTIES('store.envelope'=true);\n"
        f"INSERT INTO {BUCKET}:sales SELECT * FROM sales PARTITIONBY _key.year, _value.product_category, _headers.region "
        "STOREAS AVRO PROPERTIES('store.envelope'=true, 'partition.include.keys'=true)"
    )
    print("\nBackup KCQL:\n" + backup_kcql)
    _run_deployment("backup/backup", {"params": {"kcql": backup_kcql, "verify": "full"}})

    print(f"\nObjects in s3://{BUCKET}:")
    objects = list(store.list_objects(BUCKET, ""))
    for obj in objects[:12]:
        print(f"  {obj.key}  ({human_bytes(obj.size)})")
    if len(objects) > 12:
        print(f"  … {len(objects) - 12} more")

    targets = {payments: f"payments-restored-{suffix}", sales: f"sales-restored-{suffix}"}
    for source, target in targets.items():
        restore_kcql = (
            f"INSERT INTO `{target}` SELECT * FROM {BUCKET}:{source} PROPERTIES('store.envelope'=true)"
        )
        print("\nRestore KCQL:\n" + restore_kcql)
        _run_deployment("restore/restore", {"params": {"kcql": restore_kcql}})

    print("\nDigest comparison (source topic vs restored topic, per partition):")
    rows = []
    ok = True
    for source, target in targets.items():
        n_source, d_source = topic_digest(config, source)
        n_target, d_target = topic_digest(config, target)
        same = d_source == d_target and n_source == n_target
        ok &= same
        rows.append(
            {
                "source": source,
                "records": n_source,
                "restored": target,
                "records ": n_target,
                "digests equal": "yes" if same else "NO",
            }
        )
    print(table(rows))
    print_status(store, ("payments", "sales"))
    ui = os.environ.get("PREFECT_UI_URL", "http://127.0.0.1:14200")
    print(f"\nPrefect UI: {ui}  (flow runs of 'backup' and 'restore' are listed under Runs)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(run_demo())
