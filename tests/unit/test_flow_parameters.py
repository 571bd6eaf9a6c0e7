"""One flow signature style: every flow takes one pydantic parameters model, `params`, whose fields
all have a description (the Prefect UI renders the model as the deployment's run form), and the
flow modules stay short (they only compose tasks)."""

from __future__ import annotations

import inspect
import typing
from pathlib import Path

import pytest
import yaml
from prefect.utilities.callables import parameter_schema
from prefect.utilities.schema_tools import ValidationError as SchemaError
from prefect.utilities.schema_tools import validate
from pydantic import BaseModel, ValidationError

from flows.backup import backup_flow
from flows.drill import drill_flow
from flows.parameters import BackupParameters, DrillParameters, RestoreParameters, VerifyParameters
from flows.prune import PruneParameters, prune_flow
from flows.restore import restore_flow
from flows.status import StatusParameters, status_flow
from flows.verify import verify_flow

ROOT = Path(__file__).resolve().parents[2]
FLOWS = [
    (backup_flow, BackupParameters),
    (verify_flow, VerifyParameters),
    (restore_flow, RestoreParameters),
    (prune_flow, PruneParameters),
    (status_flow, StatusParameters),
    (drill_flow, DrillParameters),
]


@pytest.mark.parametrize(("flow", "model"), FLOWS, ids=lambda x: getattr(x, "name", None) or x.__name__)
def test_every_flow_takes_one_parameters_model_with_every_field_described(
    flow: typing.Any, model: type[BaseModel]
) -> None:
    assert list(inspect.signature(flow.fn).parameters) == ["params"]
    assert typing.get_type_hints(flow.fn)["params"] is model
    undescribed = [name for name, field in model.model_fields.items() if not field.description]
    assert not undescribed
    schema = parameter_schema(flow).model_dump()  # what a deployment's run form is made of
    assert schema["required"] == ["params"]
    fields = schema["definitions"][model.__name__]["properties"]
    assert set(fields) == set(model.model_fields)
    assert all(field.get("description") for field in fields.values())


def test_the_deployments_parameters_fit_their_flows() -> None:
    """prefect.yaml's `parameters:` are checked against the flow's schema when a run is created:
    each deployment gives its flow's one model, `params` (a flat `kcql` is refused)."""
    flows = {f"flows/{flow.fn.__module__.split('.')[-1]}.py:{flow.fn.__name__}": flow for flow, _ in FLOWS}
    deployments = yaml.safe_load((ROOT / "prefect.yaml").read_text())["deployments"]
    assert {d["name"] for d in deployments} == {"backup", "restore", "prune", "status", "drill"}
    for deployment in deployments:
        flow = flows[deployment["entrypoint"]]
        parameters = deployment.get("parameters") or {}
        schema = parameter_schema(flow).model_dump_for_openapi()
        assert set(parameters) <= {"params"}
        validate(parameters, schema, raise_on_error=True, ignore_required=True)
        if parameters:
            flow.validate_parameters(parameters)
    with pytest.raises(SchemaError):
        validate(
            {"kcql": "INSERT INTO b SELECT * FROM t"},
            parameter_schema(backup_flow).model_dump_for_openapi(),
            raise_on_error=True,
        )


def test_a_backup_takes_kcql_or_a_connector_config_and_neither_means_the_variable() -> None:
    assert BackupParameters().kcql is None  # the Prefect Variable's KCQL, read when the run starts
    with pytest.raises(ValidationError, match="not both"):
        BackupParameters(kcql="INSERT INTO b SELECT * FROM t", connector_config="connect.s3.kcql=…")


def test_a_verification_names_the_bucket() -> None:
    params = VerifyParameters(bucket="b")
    assert (params.prefix, params.deep, params.backup_id) == ("", False, None)
    with pytest.raises(ValidationError):
        VerifyParameters()  # type: ignore[call-arg]
