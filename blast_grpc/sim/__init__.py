"""A simulated OpenAI-compatible model for tests, demos and benchmarks.

It answers Chat Completions requests deterministically from scenario files and
only from what the request contains — it never looks at the website — so when
the engine observes the page wrongly, the simulated model answers wrongly.

Request kinds (see ``protocol.py``): *agent* (the request offers ``tools``; the
last user message is an ``OBSERVATION``), *extract* (no tools; ``QUERY:`` /
``CONTENT:``) and *plan* (no tools; first user message ``PLAN FOR TASK:``, maybe
followed by a user message with the ``OBSERVATION`` of the page already open).
A ``COPY: k/N`` line in the task message (racing copies) is taken out of the
task text into the variables ``copy``/``copies``.

Scenario files (``*.yaml`` in each ``--scenarios`` directory)::

    scenarios:
      - name: gorilla-one-continent
        task: "(?i)largest gorilla in (?P<continent>Asia|...)"   # searched in the task text
        delay: 0                  # extra seconds before each agent reply
        copy_delays: {"2": 0.05, default: 1.5}   # more seconds, per racing copy (COPY line only)
        plan: "..."               # planner reply ({var} substituted)
        rules:                    # first rule whose `when` holds decides the reply
          - when: {text: "The largest gorilla in {continent} is (?P<name>[A-Z][a-z]+)"}
            do: {done: {text: "It is {name}.", success: true}}
            thought: "optional assistant text sent with the tool call"
          - when: {offered: launch_subtask}          # fan-out: one call per matching element line
            for_each: {element: '^<a href="(?P<href>[^"]+)">(?P<label>.+)$'}
            do: {launch_subtask: {task: "On {href|abs} find ...", initial_url: "{href|abs}"}}
          - when: {results_present: true}            # aggregation over every match
            do: {done: {text: {each: "in (?P<c>\\w+) is (?P<n>\\w+)", in: results,
                                format: "{c}: {n}", join: "; ", prefix: "Found: "}}}
    extractors:
      - query: "(?i)secret river code"          # regex over QUERY
        find: "code is (?P<code>[A-Z]+-\\d+)"   # regex over CONTENT
        answer: '{{"found": true, "code": "{code}"}}'
        otherwise: '{{"found": false}}'

``when`` keys (all must hold): ``human`` (what a person last said: an
``ask_human`` answer or a paused task's instruction; checked first), ``url``, ``title``, ``text``, ``element`` (any
element line), ``tool_result`` (latest tool message), ``last_action`` (the last
call as ``name {json args}``), ``visited`` (any URL in ``visited``) — regexes —
and ``step_min``, ``step_max``, ``launched_min`` (at least n subtasks launched),
``results_present`` (true/false: a subtask results message is in the history),
``image`` (true/false: the observation came with a screenshot, ``allow_vision``),
``offered`` (a tool name or list of names the request offers), ``not`` (a nested
``when`` that must not hold). Regexes get ``{var}`` replaced by the escaped
value; their named groups become variables. ``{var|abs}`` resolves a relative
URL against the current page URL (``start_url`` when no page is open).

Built-in variables: ``task``, ``step``, ``url``, ``start_url``, ``copy`` and
``copies`` (from ``COPY: k/N``; "1"/"1" without it), ``launched`` (list: every
``task_...`` id of a ``Launched subtask ...`` tool result, in order),
``results`` (the latest ``Subtask results:``/``First subtask result:`` tool
message; unset before), ``visited`` (list: URLs of ``Opened ...``/``Went back
to ...`` tool results), ``thoughts`` (the assistant texts of the history, one a
line — a scenario's memory), ``links`` (labels of the observation's ``<a ...>``
lines, joined with ", ") and ``elements`` (the observation's element lines, one
a line). A list in text is joined with ", "; a list argument such as
``task_ids: "{launched}"`` stays a list.

``do`` is one tool: ``go_to_url{url}``, ``click{element|index}``,
``type{element|index, text, submit}``, ``select_option{element|index, value}``,
``send_keys{keys}``, ``hover{element|index}``, ``scroll{direction}``,
``scroll_to_text{text}``, ``wait{seconds}``, ``go_back{}``, ``extract_content{query}``,
``done{text, success}``, ``launch_subtask{task, initial_url, num_copies}``,
``get_subtask_results{task_ids}``, ``get_first_subtask_result{task_ids}``,
``ask_human{question}``;
``element`` is a regex choosing the first matching element line's index.

``for_each: {element: regex, where: {when...}, limit: n}`` makes the rule
apply only when at least one element line matches (and passes ``where``, which
may use the line's groups, e.g. ``not: {visited: "^{href|abs}$"}``); ``do`` is
then emitted once per such line, in page order, with its groups as variables,
duplicates (same arguments) dropped, at most ``limit`` — all as tool calls of one
reply. The ``thought`` uses the first line's variables. ``for_each: {each:
regex, in: variable, where, limit}`` does the same over every match of ``each``
in a variable (multiline; a list is searched one item a line). ``when`` is
checked first; ``for_each`` may use its captures.

``done.text`` and ``thought`` may be an aggregation ``{each: regex, in:
variable, format: text, join: ", ", prefix: ""}``: ``format`` is filled for every
match of ``each`` (multiline) in the named variable, duplicates dropped, and
joined after ``prefix``. With no match the text is ``prefix`` + "nothing found"
(and ``done``'s ``success`` is false).

A call of a tool the request does not offer becomes
``done(success=false, "sim: tool NAME is not offered")``.
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
