"""Where records land: object key naming and parsing, and the backup manifest's models.

Pure code: no Prefect, boto3 or confluent-kafka here.
"""
