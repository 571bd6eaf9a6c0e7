"""Kafka through confluent-kafka: client configuration (`clients`), blocking calls under a bound
(`calls`), the admin API (`admin`) and reading a partition window (`reader`)."""
