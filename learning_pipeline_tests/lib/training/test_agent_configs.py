import tomllib
from datetime import UTC, datetime

import pytest

from learning_pipeline.lib.storage.lake import LakePaths
from learning_pipeline.lib.training.agent_configs import (
    ConfigRules,
    agent_configs_dir,
    agent_file_name,
    current_config_path,
    history_path,
    list_agent_configs,
    list_config_versions,
    restore_agent_config,
    write_agent_config,
)
from learning_pipeline.lib.training.training_data import build_agent_config_recommendations
from learning_pipeline_tests._training_fixtures import event, write_events

HOSTILE = [
    "../../etc/passwd",
    "a/b\\c",
    "..",
    ".",
    "",
    "agent'; DROP TABLE outcome_events; --",
    'say "hi"',
    "nul\x00byte",
    "ÄgéNT 🚀",
    "/absolute",
    "x" * 500,
]


@pytest.fixture
def paths(tmp_path):
    return LakePaths.at(tmp_path / "data").ensure()


@pytest.mark.parametrize("name", HOSTILE)
def test_file_names_are_safe(paths, name):
    stem = agent_file_name(name)
    assert set(stem) <= set("abcdefghijklmnopqrstuvwxyz0123456789-_")
    assert 13 <= len(stem) <= 53
    base = agent_configs_dir(paths).resolve()
    assert current_config_path(paths, name).resolve().parent == base
    assert history_path(paths, name, 1).resolve().parent.parent == base / "history"


def test_names_that_slug_alike_get_different_files():
    names = ["Agent A", "agent-a", "agent_a", "AGENT/A", "agent a"]
    stems = {agent_file_name(n) for n in names}
    assert len(stems) == len(names)
    assert agent_file_name("Agent A") == agent_file_name("Agent A")


def test_history_restore_and_listing(paths):
    t0 = datetime(2025, 3, 1, tzinfo=UTC)
    name = "../evil\"'; DROP TABLE x; --"
    v1, written = write_agent_config(paths, {"name": name, "tools": ["search"], "max_turns": 5}, now=t0)
    assert written and v1.version == 1
    same, written = write_agent_config(paths, {"name": name, "tools": ["search"], "max_turns": 5})
    assert not written and same.version == 1  # unchanged recommendation: no new version
    v2, _ = write_agent_config(paths, {"name": name, "tools": ["search", "calc"], "max_turns": 8})
    assert v2.version == 2
    current = tomllib.loads(current_config_path(paths, name).read_text())
    assert current["agent"]["max_turns"] == 8 and current["agent"]["name"] == name

    v3 = restore_agent_config(paths, name, 1)
    assert v3.version == 3 and v3.restored_from == 1
    current = tomllib.loads(current_config_path(paths, name).read_text())
    assert current["agent"] == {"name": name, "tools": ["search"], "max_turns": 5}
    assert current["version"]["restored_from"] == 1

    versions = list_config_versions(paths, name)
    assert [v.version for v in versions] == [1, 2, 3]
    assert [v.is_current for v in versions] == [False, False, True]
    assert versions[0].generated_at == "2025-03-01T00:00:00+00:00"
    assert versions[0].content_hash == versions[2].content_hash
    assert list_agent_configs(paths) == {name: current_config_path(paths, name)}
    # nothing was written outside the config directory
    assert {p.name for p in paths.root.iterdir()} == {"agent_configs", "landing", "staging", "lake"}


def test_restore_errors(paths):
    write_agent_config(paths, {"name": "a", "tools": [], "max_turns": 3})
    with pytest.raises(FileNotFoundError):
        restore_agent_config(paths, "a", 7)
    with pytest.raises(FileNotFoundError):
        restore_agent_config(paths, "unknown", 1)
    for bad in (0, -1, "1", 1.0, True):
        with pytest.raises(ValueError):
            restore_agent_config(paths, "a", bad)


def test_recommendations_from_events(paths):
    hostile = "x'); DROP TABLE outcome_events; --/../"
    rows = []
    for i in range(20):  # tools in metadata for most runs, 'tool:' tags for some; turns 1..4
        rows.append(
            event(
                agent=hostile,
                task_type="search",
                metadata={"tools": ["web", "calc"] if i < 15 else ["web"], "turns": 1 + i % 4},
                tags=["tool:browser"] if i < 2 else ["misc"],
            )
        )
    rows += [event(agent=hostile, status="failure", task_type="code") for _ in range(10)]
    rows += [event(agent="plain", retry_count=r, task_type=t) for r, t in [(0, "a"), (1, "a"), (2, "b")] * 5]
    rows += [event(agent="plain", status="timeout", retry_count=9, task_type="b") for _ in range(5)]
    write_events(paths, rows)

    result = build_agent_config_recommendations(paths, ConfigRules(min_samples=5, min_tool_share=0.2))
    recs = {r["agent"]["name"]: r for r in result.recommendations}
    assert set(recs) == {hostile, "plain"}
    assert recs[hostile]["agent"]["tools"] == ["web", "calc"]  # browser is in 2/20 successful runs < 0.2
    assert recs[hostile]["agent"]["max_turns"] == 4  # ceil(p95 of 1..4)
    assert recs[hostile]["agent"]["preferred_task_types"] == ["search"]
    assert recs[hostile]["evidence"]["turns_source"] == "metadata.turns"
    # plain: turns = retry_count + 1 over successful runs (1, 2, 3); failures' retries are ignored
    assert recs["plain"]["agent"]["max_turns"] == 3
    assert recs["plain"]["agent"]["tools"] == []
    assert recs["plain"]["agent"]["preferred_task_types"] == ["a"]  # a: 10/10; b: 5/10 < overall 15/20
    assert len(result.written) == 2

    again = build_agent_config_recommendations(paths, ConfigRules(min_samples=5, min_tool_share=0.2))
    assert again.written == [] and len(again.unchanged) == 2
    assert list(list_agent_configs(paths)) == sorted([hostile, "plain"], key=agent_file_name)
    assert (paths.root / "agent_configs").is_dir()
    assert not any(p.name == "outcome_events" for p in (paths.root / "agent_configs").rglob("*"))
