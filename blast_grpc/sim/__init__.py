"""A simulated OpenAI-compatible model for tests, demos and benchmarks.

It answers Chat Completions requests deterministically from scenario files and
only from what the request contains — it never looks at the website — so when
the engine observes the page wrongly, the simulated model answers wrongly.

Request kinds (see ``protocol.py``): *agent* (the request offers ``tools``; the
last user message is an ``OBSERVATION``), *extract* (no tools; ``QUERY:`` /
``CONTENT:``) and *plan* (no tools; first user message ``PLAN FOR TASK:``).

Scenario files (``*.yaml`` in each ``--scenarios`` directory)::

    scenarios:
      - name: gorilla-one-continent
        task: "(?i)largest gorilla in (?P<continent>Asia|...)"   # searched in the task text
        delay: 0                  # extra seconds before each agent reply
        plan: "..."               # planner reply ({var} substituted)
        rules:                    # first rule whose `when` holds decides the reply
          - when: {text: "The largest gorilla in {continent} is (?P<name>[A-Z][a-z]+)"}
            do: {done: {text: "It is {name}.", success: true}}
            thought: "optional assistant text sent with the tool call"
    extractors:
      - query: "(?i)secret river code"          # regex over QUERY
        find: "code is (?P<code>[A-Z]+-\\d+)"   # regex over CONTENT
        answer: '{{"found": true, "code": "{code}"}}'
        otherwise: '{{"found": false}}'

``when`` keys (all must hold): ``url``, ``title``, ``text``, ``element`` (any
element line), ``tool_result`` (latest tool message), ``last_action`` (the
previous call as ``name {json args}``), ``step_min``, ``step_max``, ``not``.
Regexes get ``{var}`` replaced by the escaped value; their named groups become
variables. Built-ins: ``task``, ``step``, ``url``, ``start_url``. ``do`` is one
tool: ``go_to_url{url}``, ``click{element|index}``,
``type{element|index, text, submit}``, ``select_option{element|index, value}``,
``scroll{direction}``, ``go_back{}``, ``extract_content{query}``,
``done{text, success}``; ``element`` is a regex choosing the first matching
element line's index.
"""

from .faults import KINDS as FAULT_KINDS
from .faults import Fault
from .latency import LatencyModel, LatencySpec
from .runner import SimServer, main
from .scenarios import SHIPPED_DIR, ScenarioError, ScenarioSet, load_scenarios

__all__ = [
    "FAULT_KINDS", "SHIPPED_DIR", "Fault", "LatencyModel", "LatencySpec", "ScenarioError", "ScenarioSet",
    "SimServer", "load_scenarios", "main",
]
