"""`icelab schema`: the JSON Schemas editors check topology and scenario files with."""

from __future__ import annotations

import json

from lab.core.errors import EXIT_OK
from lab.model.schema import json_schema as topology_schema
from lab.scenario.schema import json_schema as scenario_schema


def schema(args) -> int:
    print(json.dumps(scenario_schema() if args.kind == "scenario" else topology_schema(), indent=2))
    return EXIT_OK
