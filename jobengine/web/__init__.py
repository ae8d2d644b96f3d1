"""The HTTP surfaces of jobengine: IPS SOAP, the JSON API and the WSDL, as one Starlette app.

``jobengine serve`` runs it with uvicorn; ``create_app()`` builds it.

* ``POST /scene7/services/IpsApiService``: SOAP 1.1 document/literal (:mod:`.soap`)
* ``POST /scene7/api/IpsApiService``: the same operations as plain XML, a ``<Request>`` holding
  authHeader and one ``<op>Param`` (:mod:`.plainxml`)
* ``GET /scene7/webservice/IpsApi.wsdl`` (and ``GET .../IpsApiService?wsdl``): the WSDL, its
  XSD generated from the models (:mod:`.wsdl`)
* ``POST /api/v1/<operationName>``, ``GET /api/v1/openapi.json``: JSON (:mod:`.jsonapi`)
* ``GET /metrics``: Prometheus metrics read from the store at scrape time
(:mod:`jobengine.web.metrics`)
"""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.routing import Route

from jobengine.settings import SOAP_PATH

__all__ = ["create_app"]


def create_app() -> Starlette:
    """The Starlette application with every route."""
    from jobengine.web.jsonapi import json_endpoint, openapi_endpoint
    from jobengine.web.metrics import make_registry, metrics_endpoint
    from jobengine.web.plainxml import PLAIN_XML_PATH, plain_xml_endpoint
    from jobengine.web.soap import soap_endpoint
    from jobengine.web.wsdl import wsdl_endpoint

    routes = [
        Route(SOAP_PATH, soap_endpoint, methods=["POST"]),
        Route(SOAP_PATH, wsdl_endpoint, methods=["GET"]),  # ?wsdl
        Route(PLAIN_XML_PATH, plain_xml_endpoint, methods=["POST"]),
        Route("/scene7/webservice/IpsApi.wsdl", wsdl_endpoint, methods=["GET"]),
        Route("/scene7/webservice/IpsApi-{version}.wsdl", wsdl_endpoint, methods=["GET"]),
        Route("/api/v1/openapi.json", openapi_endpoint, methods=["GET"]),
        Route("/api/v1/{operation}", json_endpoint, methods=["POST"]),
        Route("/metrics", metrics_endpoint(make_registry()), methods=["GET"]),
    ]
    return Starlette(routes=routes)
