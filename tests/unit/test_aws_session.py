"""The session's data loader finds the same models as botocore's, without listing every service."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import UnknownServiceError
from botocore.loaders import Loader

from shared.plumbing import bootstrap
from shared.plumbing.aws_session import ServiceLoader, service_loader, session

# Every service and model type the functions' clients and the DynamoDB resource load.
USED = [
    (service, kind)
    for service in ("s3", "dynamodb", "sns", "ssm")
    for kind in ("service-2", "endpoint-rule-set-1", "paginators-1")
] + [("dynamodb", "resources-1"), ("s3", "resources-1"), ("sns", "resources-1")]


class CountingLoader(ServiceLoader):
    listed: list[str]

    def list_available_services(self, type_name: str) -> Any:
        self.listed.append(type_name)
        return super().list_available_services(type_name)


def with_boto3_data(loader: Loader) -> Loader:
    """boto3 adds its resource models' folder to the session's loader; the same here."""
    boto3.session.Session(botocore_session=_core_with(loader))
    return loader


def _core_with(loader: Loader) -> Any:
    import botocore.session

    core = botocore.session.get_session()
    core.register_component("data_loader", loader)
    return core


@pytest.mark.parametrize(("service", "kind"), USED)
def test_models_are_the_stock_loaders(service: str, kind: str) -> None:
    stock, ours = with_boto3_data(Loader()), with_boto3_data(service_loader(None))
    assert ours.load_service_model(service, kind) == stock.load_service_model(service, kind)


def test_a_named_api_version_is_honoured() -> None:
    stock, ours = Loader(), ServiceLoader()
    model = ours.load_service_model("dynamodb", "service-2", "2012-08-10")
    assert model == stock.load_service_model("dynamodb", "service-2", "2012-08-10")


def test_known_services_are_loaded_without_listing_every_service() -> None:
    loader = CountingLoader()
    loader.listed = []
    for service, kind in USED[:6]:
        loader.load_service_model(service, kind)
    assert loader.listed == []


def test_an_unknown_service_is_botocores_unknown_service_error() -> None:
    loader = CountingLoader()
    loader.listed = []
    with pytest.raises(UnknownServiceError, match="dynamodb"):
        loader.load_service_model("no-such-service", "service-2")
    assert loader.listed == ["service-2"]


def test_the_data_path_setting_is_searched_first(tmp_path: Path) -> None:
    loader = service_loader(f"{tmp_path}:~/elsewhere")
    assert loader.search_paths[:2] == [str(tmp_path), str(Path("~/elsewhere").expanduser())]


def test_bootstraps_clients_come_from_one_session_with_the_service_loader() -> None:
    built = session()
    assert isinstance(built._session.get_component("data_loader"), ServiceLoader)
    s3 = bootstrap.client("s3")
    assert s3.meta.service_model.service_name == "s3"
    assert isinstance(bootstrap._session()._session.get_component("data_loader"), ServiceLoader)
    table = bootstrap.dynamodb().Table("t")
    assert table.name == "t"


def test_a_scenario_parses_each_service_model_once_for_all_its_cold_starts() -> None:
    """testkit.harness_speed's shared_service_models: the loaders of two "containers" (the second built from a class
    defined anew, as a re-imported module would) hand out one parsed model; outside it, each parses its own."""
    from testkit.harness_speed import shared_service_models

    def fresh_class() -> type[ServiceLoader]:
        return type("ServiceLoader", (ServiceLoader,), {})

    with shared_service_models():
        first = fresh_class()().load_service_model("dynamodb", "service-2")
        second = fresh_class()().load_service_model("dynamodb", "service-2")
        assert first is second
    assert fresh_class()().load_service_model("dynamodb", "service-2") is not first
    assert ServiceLoader().load_service_model("dynamodb", "service-2") is not ServiceLoader().load_service_model(
        "dynamodb", "service-2"
    )
