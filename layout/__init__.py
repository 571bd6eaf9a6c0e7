"""Where records land and how they come back: the pure models of a backup — object key naming
and parsing (`keys`), PARTITIONBY grouping (`grouping`, `partition_values`, `transforms`), rolling
records into objects by the flush rules (`objects`), the manifest (`manifest`), chains and
retention (`chains`), registry schemas (`schemas`), the lock's lease records (`lock`), the KCQL
spec's codec options (`spec_bridge`) — and, in `layout.restore`, the restore's.

Pure code: no Prefect, boto3 or confluent-kafka here.
"""
