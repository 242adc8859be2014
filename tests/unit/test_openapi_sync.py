"""openapi.yaml describes exactly the HTTP routes and methods of the function folders."""
import json
import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]


def function_routes() -> set[tuple[str, str]]:
    prefix = json.loads((ROOT / "host.json").read_text())["extensions"]["http"]["routePrefix"]
    routes = set()
    for path in ROOT.glob("*/function.json"):
        for binding in json.loads(path.read_text())["bindings"]:
            if binding["type"] == "httpTrigger":
                route = re.sub(r"\{(\w+)(?::[^}]*)?\??\}", r"{\1}", binding.get("route") or path.parent.name)
                for method in binding["methods"]:
                    routes.add((f"/{prefix}/{route}", method.lower()))
    return routes


def spec_routes() -> set[tuple[str, str]]:
    spec = yaml.safe_load((ROOT / "openapi.yaml").read_text())
    methods = {"get", "put", "post", "delete", "patch"}
    return {(path, method) for path, item in spec["paths"].items() for method in item if method in methods}


def test_every_function_route_is_documented_and_nothing_else():
    assert function_routes() == spec_routes()


def test_operation_ids_name_the_function_folders():
    spec = yaml.safe_load((ROOT / "openapi.yaml").read_text())
    ids = {op["operationId"] for item in spec["paths"].values() for key, op in item.items() if key != "parameters"}
    folders = {p.parent.name for p in ROOT.glob("*/function.json")
               if json.loads(p.read_text())["bindings"][0]["type"] == "httpTrigger"}
    assert ids == folders
