"""kafka-s3-backup: back up Kafka topics to S3 and restore them, configured with KCQL."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("kafka-s3-backup")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0"
