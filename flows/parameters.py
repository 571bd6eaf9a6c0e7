"""What a backup, a verification, a restore or a restore drill is asked to do: the flows'
parameters (one pydantic model per flow, which the Prefect UI renders as a form) and their parsing into what the
tasks take — the backup's specs (its KCQL from the Prefect Variable when the run names none), the
restore's Selection (kcql/selection.py parses the statement and applies the overrides). The prune
flow's are beside it, in flows/prune.py."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, Literal

from prefect import get_run_logger
from prefect.variables import Variable
from pydantic import AfterValidator, BaseModel, Field, field_validator, model_validator

from core.machine import MAX_WORKERS, default_workers
from kcql import BackupSpec, parse_backup, parse_connector_config
from kcql.selection import Selection, restore_selection
from layout.drills import scratch_prefix
from tasks.runtime.task_runners import TASK_RUNNERS, check_task_runner

# The Prefect Variable the scheduled deployment's KCQL comes from, read when each run starts (so an
# edit in the UI reaches the next run without a redeploy) unless the run names its own KCQL.
KCQL_VARIABLE = "kbackup_backup_kcql"

TaskRunnerChoice = Annotated[str, AfterValidator(check_task_runner)]


DEFAULT_CONCURRENCY = default_workers()
"""The task runner's workers when a run does not say: the cores this process may use."""


def concurrency_field(work: str, note: str = "") -> Any:
    return Field(
        default=DEFAULT_CONCURRENCY,
        ge=1,
        le=MAX_WORKERS,
        description=f"The task runner's workers: how many {work} at the same time{note}. Default: the cores "
        "the process running the flow may use (its CPU affinity, else the machine's core count; "
        f"{DEFAULT_CONCURRENCY} where this form was made), at most {MAX_WORKERS}.",
    )


def s3_credentials_block_field() -> Any:
    return Field(
        default=None,
        description="Name of a prefect-aws AwsCredentials block for S3 (the block's name, never a secret). "
        "Empty: the worker's AWS_* variables, profile or role.",
    )


def kafka_password_block_field() -> Any:
    return Field(
        default=None,
        description="Name of a Prefect Secret block holding the Kafka SASL password, or a JSON object of "
        "librdkafka settings (the block's name, never a secret). Empty: KBACKUP_KAFKA_SASL_PASSWORD.",
    )


def task_runner_field(work: str) -> Any:
    return Field(
        default="auto", description=f"Where the {work} run: {', '.join(TASK_RUNNERS)} (see the README)."
    )


class BackupParameters(BaseModel):
    """What one backup run does; rendered as a form in the Prefect UI. With neither `kcql` nor
    `connector_config`, the run backs up what the Prefect Variable kbackup_backup_kcql says."""

    kcql: str | None = Field(
        default=None,
        description="KCQL statements, e.g. INSERT INTO bucket:prefix SELECT * FROM topic STOREAS AVRO "
        f"PROPERTIES('store.envelope'=true). Empty: the Prefect Variable {KCQL_VARIABLE}, read when the run starts.",
    )
    connector_config: str | None = Field(
        default=None,
        description="Instead of kcql, a Kafka Connect S3 sink .properties text (connect.s3.kcql=…).",
    )
    verify: Literal["quick", "sampled", "full"] = Field(
        default="sampled",
        description="quick: each object listed with its size and its upload's ETag; sampled: also decode a "
        "sample of the backup's objects (10 %, at least 3 and one per topic, at most 256 MiB past those); full: "
        "decode everything and recompute every partition's records digest.",
    )
    concurrency: int = concurrency_field(
        "work units of partitions are exported",
        " (the partitions are packed into this many, more for large data)",
    )
    task_runner: TaskRunnerChoice = task_runner_field("exports")
    full: bool = Field(
        default=False,
        description="A full backup: start a new chain from each partition's earliest offset (else incremental, "
        "or full when 'backup.full.every' says so).",
    )
    s3_credentials_block: str | None = s3_credentials_block_field()
    kafka_password_block: str | None = kafka_password_block_field()
    rpo: str | None = Field(
        default=None,
        description="The deployment's recovery point objective, for its alert only: `kbackup alerts setup` "
        "alerts when no run committed a restore point within it (45s, 90m, 2h, 1d). Empty: twice the schedule's interval. "
        "A run does not read it.",
    )

    @model_validator(mode="after")
    def _one_source(self) -> BackupParameters:
        if self.kcql and self.connector_config:
            raise ValueError(
                f"give one of kcql and connector_config, not both (neither: the Prefect Variable {KCQL_VARIABLE})"
            )
        return self


def specs_and_transforms(params: BackupParameters) -> tuple[list[BackupSpec], tuple, tuple[str, ...]]:
    """The statements to run, the connector config's transforms, and its `topics` list; with
    neither KCQL nor a connector config, the Prefect Variable's KCQL (read now)."""
    if params.connector_config:
        config = parse_connector_config(params.connector_config)
        return list(config.specs), tuple(config.transforms), tuple(config.topics)
    return parse_backup(params.kcql or kcql_from_variable()), (), ()


def kcql_from_variable() -> str:
    """The KCQL held by the Prefect Variable, or a clear error naming it."""
    value = Variable.get(KCQL_VARIABLE, default=None)
    if not isinstance(value, str) or not value.strip():
        raise ValueError(
            f"no KCQL given: pass the kcql parameter or set the Prefect Variable {KCQL_VARIABLE!r} "
            f"(now {value!r})"
        )
    get_run_logger().info("KCQL from the Prefect Variable %s: %s", KCQL_VARIABLE, value)
    return value


class VerifyParameters(BaseModel):
    """What one verification checks; rendered as a form in the Prefect UI."""

    bucket: str = Field(description="The bucket of the backups.")
    prefix: str = Field(default="", description="Their prefix (as in the backup's KCQL: bucket:prefix).")
    deep: bool = Field(
        default=False,
        description="Decode every object and recompute every partition's records digest (else: each object "
        "listed with its manifest's size and checksum).",
    )
    backup_id: str | None = Field(
        default=None, description="Verify this backup only (kbackup ls lists them); every one when empty."
    )


class RestoreParameters(BaseModel):
    """What one restore does; rendered as a form in the Prefect UI. Fields other than `kcql`
    override the statement's properties when set."""

    kcql: str = Field(
        description="INSERT INTO target SELECT * FROM bucket:prefix [STOREAS …] [LIMIT n] [PROPERTIES(…)]; "
        "INSERT INTO * restores every topic to its original name.",
    )
    target: str | None = Field(default=None, description="Target topic, instead of the statement's.")
    restore_from: str | None = Field(
        default=None, description="Start of the window (inclusive): ISO-8601 time or offset:N (restore.from)."
    )
    restore_to: str | None = Field(
        default=None, description="End of the window (exclusive): ISO-8601 time or offset:N (restore.to)."
    )
    partitions: list[int] | None = Field(
        default=None, description="Source partitions to restore (all when empty)."
    )
    filter: str | None = Field(default=None, description="Partition-key values, e.g. region=EMEA,year=2023.")
    point: str | None = Field(
        default=None,
        description="The restore point: a backup id (kbackup ls lists them); the newest when empty.",
    )
    group_prefix: str = Field(default="", description="Prefix for the translated consumer-group names.")
    topic_prefix: str = Field(
        default="",
        description="Prefix for every target topic's name (restore.topic.prefix), e.g. INSERT INTO * into "
        "restored-<topic>.",
    )
    translate_groups: bool = Field(default=True, description="Commit the backed-up consumer-group offsets.")
    acls: Literal["off", "literal", "all"] | None = Field(
        default=None,
        description="Recreate the backup's ACL bindings once the records are restored (restore.acls): literal "
        "(the literal bindings of the restored topics and groups, renamed), all (also prefixed and wildcard "
        "ones, as recorded), off. Empty: the statement's. Needs ALTER and DESCRIBE on the cluster.",
    )
    users: bool = Field(
        default=False,
        description="Create the backup's SCRAM users missing on the target (restore.users), with the "
        "passwords of users_secret_block or KBACKUP_RESTORE_USER_PASSWORDS; never from the backup.",
    )
    users_secret_block: str | None = Field(
        default=None,
        description="Name of a Prefect Secret block holding JSON user → password for the users to create (the "
        "block's name, never a secret). Empty: the environment variable KBACKUP_RESTORE_USER_PASSWORDS.",
    )
    dry_run: bool = Field(default=False, description="Plan and report only: create nothing, produce nothing.")
    check: bool = Field(default=True, description="Consume what was restored and compare digests.")
    concurrency: int = concurrency_field("units of partitions are restored")
    task_runner: TaskRunnerChoice = task_runner_field("restores")
    s3_credentials_block: str | None = s3_credentials_block_field()
    kafka_password_block: str | None = kafka_password_block_field()

    @field_validator("kcql")
    @classmethod
    def _not_empty(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("a KCQL statement is required")
        return value


def selection_of(params: RestoreParameters, names: Mapping[str, str] | None = None) -> Selection:
    """The statement plus the parameters' overrides (kcql.selection); raises KcqlError (an
    OverrideError names the override, by `names` when given: the command line's flags) or
    ValueError on bad input."""
    return restore_selection(
        params.kcql,
        target=params.target,
        restore_from=params.restore_from,
        restore_to=params.restore_to,
        partitions=params.partitions,
        filter=params.filter,
        point=params.point,
        group_prefix=params.group_prefix,
        topic_prefix=params.topic_prefix,
        translate_groups=params.translate_groups,
        acls=params.acls,
        users=params.users,
        names=names,
    )


class DrillParameters(BaseModel):
    """What one restore drill proves; rendered as a form in the Prefect UI."""

    bucket: str = Field(description="The bucket of the backups.")
    prefix: str = Field(default="", description="Their prefix (as in the backup's KCQL: bucket:prefix).")
    point: str | None = Field(
        default=None,
        description="The restore point to drill: a backup id (kbackup ls); the newest when empty.",
    )
    partitions: list[int] | None = Field(
        default=None,
        description="A sample: restore only these partitions of every topic (all when empty).",
    )
    concurrency: int = concurrency_field("units of partitions are restored")
    task_runner: TaskRunnerChoice = task_runner_field("drill's restores")
    s3_credentials_block: str | None = s3_credentials_block_field()
    kafka_password_block: str | None = Field(
        default=None,
        description="Name of a Prefect Secret block: the Kafka SASL password, or a JSON object of librdkafka "
        "settings — with its own bootstrap.servers, it names another cluster, and the drill's scratch "
        "topics are created there (the block's name, never a secret). Empty: the KBACKUP_KAFKA_* settings.",
    )


def drill_restore_parameters(params: DrillParameters, drill_id: str, point: str) -> RestoreParameters:
    """The drill's restore: every topic of `point` into its scratch topic, the full pre-flight."""
    location = f"{params.bucket}:{params.prefix}" if params.prefix else params.bucket
    scratch = scratch_prefix(drill_id)
    return RestoreParameters(
        kcql=f"INSERT INTO * SELECT * FROM {location} "
        "PROPERTIES('restore.preflight'='full', 'restore.schema.ids'='keep')",
        point=point,
        partitions=params.partitions or None,
        topic_prefix=scratch,
        group_prefix=scratch,
        concurrency=params.concurrency,
        task_runner=params.task_runner,
    )
