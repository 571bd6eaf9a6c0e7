"""Kafka through confluent-kafka: client configuration (`clients`), blocking calls under a bound
(`calls`), the admin API (`admin`) and reading partition windows, one or many through one
consumer (`reader`)."""
