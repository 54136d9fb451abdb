"""The OpenAPI document matches Klein's routes, and is a coherent OpenAPI 3.1 document."""

from __future__ import annotations

import json
import re
from typing import Any, Iterator, Set, Tuple

from treq.testing import StubTreq
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from siprec.http.app import SiprecApi
from siprec.http.openapi import build_document
from siprec.http.routing import ROUTES, openapi_path
from siprec.ops.health import Health
from siprec.ops.metrics import Metrics

METHODS = {"get", "put", "post", "delete", "patch", "head", "options", "trace"}


class Manager:
    active_count = 0

    def sessions(self) -> list:
        return []

    def get(self, _: str) -> None:
        return None


def klein_operations() -> Set[Tuple[str, str]]:
    """(OpenAPI path, method) for every rule Klein routes, HEAD/OPTIONS aside."""
    out = set()
    for rule in SiprecApi.app.url_map.iter_rules():
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            out.add((openapi_path(rule.rule), method.lower()))
    return out


def refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref":
                yield value
            else:
                yield from refs(value)
    elif isinstance(node, list):
        for item in node:
            yield from refs(item)


class OpenApiTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.document = build_document()

    def test_served_document(self):
        clock = Clock()
        api = SiprecApi(Manager(), Metrics(process_metrics=False), Health(clock), clock)
        treq = StubTreq(api.app.resource())
        response = self.successResultOf(treq.get("http://siprec.test/api/openapi.json"))
        self.assertEqual(response.code, 200)
        served = json.loads(self.successResultOf(treq.content(response)))
        self.assertEqual(served, json.loads(json.dumps(self.document)))

    def test_paths_match_klein_routes(self):
        documented = {(path, method) for path, item in self.document["paths"].items()
                      for method in item if method in METHODS}
        self.assertEqual(documented, klein_operations())
        self.assertEqual(len(ROUTES), len(documented))  # one RouteDoc per operation

    def test_expected_routes_present(self):
        ops = klein_operations()
        for expected in [("/api/pause/{session_id}", "post"), ("/api/resume/{session_id}", "post"),
                         ("/api/pause/all", "post"), ("/api/resume/all", "post"),
                         ("/api/status/{session_id}", "get"), ("/api/openapi.json", "get"),
                         ("/api/sessions", "get"), ("/api/sessions/{session_id}", "delete"),
                         ("/metrics", "get"), ("/health", "get")]:
            self.assertIn(expected, ops)

    def test_structure(self):
        doc = self.document
        self.assertEqual(doc["openapi"], "3.1.0")
        self.assertTrue(doc["info"]["title"] and doc["info"]["version"])
        operation_ids = []
        for path, item in doc["paths"].items():
            template_params = set(re.findall(r"\{([^}]+)\}", path))
            for method, op in item.items():
                operation_ids.append(op["operationId"])
                self.assertTrue(op["summary"])
                self.assertTrue(op["x-required-role"])
                declared = {p["name"] for p in op["parameters"] if p["in"] == "path"}
                self.assertEqual(declared, template_params, (path, method))
                self.assertTrue(any(code.startswith("2") for code in op["responses"]))
                for code, response in op["responses"].items():
                    self.assertTrue(code == "default" or re.fullmatch(r"[1-5]\d\d", code))
                    self.assertIn("description", response)
        self.assertEqual(len(operation_ids), len(set(operation_ids)))

    def test_refs_resolve(self):
        schemas = self.document["components"]["schemas"]
        for ref in refs(self.document):
            self.assertTrue(ref.startswith("#/components/schemas/"), ref)
            self.assertIn(ref.rsplit("/", 1)[1], schemas)

    def test_roles_documented(self):
        paths = self.document["paths"]
        self.assertEqual(paths["/api/pause/{session_id}"]["post"]["x-required-role"],
                         ["operator", "admin"])
        self.assertEqual(paths["/api/sessions"]["get"]["x-required-role"],
                         ["viewer", "operator", "admin"])
        self.assertIn({}, paths["/health"]["get"]["security"])  # public by default
        self.assertNotIn("security", paths["/api/sessions"]["get"])  # the global one applies
        self.assertEqual(set(self.document["x-websockets"]), {"/ws", "/ws/analytics"})
