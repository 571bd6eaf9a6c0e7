"""The demo's steps. Until the backup and restore flows land, it proves the stack works."""

from __future__ import annotations

import uuid

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

from kbackup.settings import KafkaSettings, S3Settings
from tasks.s3 import s3_client


def run_demo() -> int:
    kafka = KafkaSettings()
    s3_settings = S3Settings()
    print(f"Kafka at {kafka.bootstrap_servers}, S3 at {s3_settings.endpoint_url}")
    admin = AdminClient(kafka.client_config())
    topic = f"demo-{uuid.uuid4().hex[:6]}"
    admin.create_topics([NewTopic(topic, 3, 1)])[topic].result(30)
    producer = Producer(kafka.client_config())
    for i in range(1000):
        producer.produce(topic, key=str(i).encode(), value=b"hello", partition=i % 3)
    producer.flush(30)
    print(f"produced 1000 records to {topic}")
    s3 = s3_client(s3_settings)
    bucket = f"demo-{uuid.uuid4().hex[:6]}"
    s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key="hello.txt", Body=b"hello")
    print(f"bucket {bucket} holds {[o['Key'] for o in s3.list_objects_v2(Bucket=bucket)['Contents']]}")
    return 0
