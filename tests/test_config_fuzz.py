"""Random mutations of a valid study: each one is accepted and plans, or is refused at planning
with a ConfigError naming a field of the config; no other error, and nothing reaches a job."""

from __future__ import annotations

import copy

from conftest import REPO, TINY_STUDY
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tinylang.config import ConfigError, load_study

TOP_LEVEL = ("study", "device", "threads", "paper_study", "languages", "models", "training", "runs", "sweep",
             "evaluators")
ODD_VALUES = [None, True, False, 0, -1, 1, 7, 10**9, 1e30, float("inf"), float("nan"), 0.5, "", "x", "../x",
              "a b", [], [1, 2], {}, {"x": 1}]


def _paths(node, prefix=()):
    """Every key path into the config's mappings."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield (*prefix, key)
            yield from _paths(value, (*prefix, key))


PATHS = list(_paths(TINY_STUDY))


def _mutate(config, path, kind, value):
    parent = config
    for key in path[:-1]:
        parent = parent[key]
    if kind == "set":
        parent[path[-1]] = value
    elif kind == "delete":
        del parent[path[-1]]
    else:  # an unknown key beside it
        parent["not_a_field"] = value


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(path=st.sampled_from(PATHS), kind=st.sampled_from(["set", "set", "delete", "add"]),
       value=st.sampled_from(ODD_VALUES))
def test_a_mutated_study_plans_or_is_refused_naming_a_field(path, kind, value):
    config = copy.deepcopy(TINY_STUDY)
    _mutate(config, path, kind, value)
    try:
        study = load_study(config, language_library=REPO / "config" / "languages")
        targets = study.targets(f"results/{study.study}").all_outputs()
    except ConfigError as err:
        message = str(err)
        assert any(field in message for field in TOP_LEVEL), message
        return
    assert targets, "a study that plans has outputs"
