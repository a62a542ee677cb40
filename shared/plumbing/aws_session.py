"""The one boto3 session a container builds its clients from, with a data loader that finds a
service's model by looking in that service's directory.

botocore's stock ``Loader.load_service_model`` first lists every service it knows about for the model
type asked (about 450 directories under ``botocore/data``, each listed and stat-ed), once per type: the
first S3 and DynamoDB clients and the DynamoDB resource ask for three types (``service-2``,
``endpoint-rule-set-1``, ``resources-1``), about 4,000 ``stat`` calls and 30-40 ms of every cold start
(bench/cold_start.py). ``ServiceLoader`` checks only the requested service's own directory, then does
exactly what the stock method does; a service that is not there still gets botocore's own
``UnknownServiceError``. Imported only by bootstrap's session factory: importing it imports botocore.
"""

from __future__ import annotations

import os
from typing import Any

import boto3
import botocore.session
from botocore.exceptions import DataNotFoundError
from botocore.loaders import Loader, instance_cache


class ServiceLoader(Loader):  # type: ignore[misc]
    """botocore's data loader without the walk over every service directory."""

    @instance_cache  # type: ignore[untyped-decorator]
    def load_service_model(self, service_name: str, type_name: str, api_version: str | None = None) -> Any:
        try:
            latest = self.determine_latest_version(service_name, type_name)
        except DataNotFoundError:
            # Not installed (or not of this type): the stock path, whose error lists the known services.
            return super().load_service_model(service_name, type_name, api_version)
        version = api_version or latest
        model = self.load_data(os.path.join(service_name, version, type_name))
        self._extras_processor.process(model, self._find_extras(service_name, type_name, version))
        return model


def service_loader(data_path: str | None) -> ServiceLoader:
    """What ``botocore.loaders.create_loader`` builds from the ``data_path`` setting, as a ServiceLoader."""
    if data_path is None:
        return ServiceLoader()
    paths = [os.path.expanduser(os.path.expandvars(path)) for path in data_path.split(os.pathsep)]
    return ServiceLoader(extra_search_paths=paths)


def session(loader: ServiceLoader | None = None) -> boto3.session.Session:
    """A boto3 session over a botocore session whose data loader is a ServiceLoader: ``loader`` when
    given (its parsed models are reused; it holds no credentials and no connections), else a new one."""
    core = botocore.session.get_session()
    core.register_component("data_loader", loader or service_loader(core.get_config_variable("data_path")))
    return boto3.session.Session(botocore_session=core)


def loader_of(boto3_session: boto3.session.Session) -> ServiceLoader:
    found: ServiceLoader = boto3_session._session.get_component("data_loader")
    return found
