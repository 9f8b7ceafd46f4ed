"""Agent config recommendations: one TOML file per agent, versioned so any earlier version can be restored.

Layout under the data directory:

    agent_configs/<file>.toml                     the current config of an agent
    agent_configs/history/<file>/<version>.toml   every version ever written (version = 000001, 000002, ...)

Agent names are data. `agent_file_name` turns a name into `<slug>-<hash>` (lowercase ASCII letters,
digits, `_` and `-`, at most 40 characters, then 12 hex digits of SHA-256 of the exact name), so quotes,
`../`, slashes, NUL bytes or SQL fragments never change a path, and two names that slug alike still get
different files. The exact name is stored inside the TOML (`[agent] name`), and names only ever reach
SQL as bound parameters or column values.

A new version is written only when the recommendation changes (the content hash of the `[agent]` table
differs from the current version), so re-materializing on the same data adds no history. Restoring
version v writes a new version whose `[agent]` table equals v's and records `restored_from = v`: the
history is append-only.

Recommendation rules (from the `agent_config_*` SQL models):
- tools: tools seen in at least `min_tool_share` of the agent's successful runs (metadata.tools arrays
  and `tool:<name>` tags), most used first, at most `max_tools`;
- max_turns: ceil(p95 of turns over successful runs), clamped to [1, max_turns_cap]; turns = metadata.turns,
  metadata.num_turns, or retry_count + 1; `default_max_turns` when no successful run reports any (the cap
  applies to the default too);
- preferred_task_types: up to `max_task_types` task types with at least `min_samples` executions whose
  success rate is at least the agent's overall success rate, best first.
"""

from __future__ import annotations

import hashlib
import math
import re
import tomllib
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import tomli_w

from learning_pipeline.lib.storage.lake import LakePaths, write_bytes_atomic

VERSION_WIDTH = 6
_SLUG_BAD = re.compile(r"[^a-z0-9_-]+")


def agent_configs_dir(paths: LakePaths) -> Path:
    return paths.root / "agent_configs"


def agent_file_name(agent: str) -> str:
    """A safe, unique file-name stem for an agent name (see the module doc)."""
    if not isinstance(agent, str):
        raise TypeError(f"agent name must be a string, got {type(agent).__name__}")
    slug = _SLUG_BAD.sub("-", agent.lower()).strip("-_")[:40].strip("-_") or "agent"
    digest = hashlib.sha256(agent.encode("utf-8", "surrogatepass")).hexdigest()[:12]
    return f"{slug}-{digest}"


def _inside(base: Path, path: Path) -> Path:
    resolved = path.resolve()
    if not resolved.is_relative_to(base.resolve()):
        raise ValueError(f"refusing a path outside {base}: {path}")
    return path


def current_config_path(paths: LakePaths, agent: str) -> Path:
    base = agent_configs_dir(paths)
    return _inside(base, base / f"{agent_file_name(agent)}.toml")


def history_dir(paths: LakePaths, agent: str) -> Path:
    base = agent_configs_dir(paths)
    return _inside(base, base / "history" / agent_file_name(agent))


def history_path(paths: LakePaths, agent: str, version: int) -> Path:
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise ValueError(f"version must be a positive integer, got {version!r}")
    return history_dir(paths, agent) / f"{version:0{VERSION_WIDTH}d}.toml"


@dataclass(frozen=True)
class ConfigVersion:
    agent: str
    version: int
    generated_at: str
    path: Path
    content_hash: str
    restored_from: int | None
    is_current: bool


def _content_hash(agent_table: dict) -> str:
    return hashlib.sha256(tomli_w.dumps({"agent": agent_table}).encode("utf-8")).hexdigest()[:16]


def read_config(path: Path) -> dict:
    with open(path, "rb") as handle:
        return tomllib.load(handle)


def list_config_versions(paths: LakePaths, agent: str) -> list[ConfigVersion]:
    """Every stored version of an agent's config, oldest first."""
    directory = history_dir(paths, agent)
    if not directory.exists():
        return []
    current = current_config_path(paths, agent)
    current_version = read_config(current)["version"]["number"] if current.exists() else None
    out = []
    for path in sorted(directory.glob("[0-9]*.toml")):
        doc = read_config(path)
        meta = doc["version"]
        out.append(
            ConfigVersion(
                agent=doc["agent"]["name"],
                version=int(meta["number"]),
                generated_at=str(meta["generated_at"]),
                path=path,
                content_hash=str(meta["content_hash"]),
                restored_from=meta.get("restored_from"),
                is_current=int(meta["number"]) == current_version,
            )
        )
    return out


def list_agent_configs(paths: LakePaths) -> dict[str, Path]:
    """Agent name -> current config path, for every agent with a config."""
    base = agent_configs_dir(paths)
    if not base.exists():
        return {}
    found = {}
    for path in sorted(base.glob("*.toml")):
        found[read_config(path)["agent"]["name"]] = path
    return found


def write_agent_config(
    paths: LakePaths,
    agent_table: dict,
    evidence: dict | None = None,
    restored_from: int | None = None,
    now: datetime | None = None,
) -> tuple[ConfigVersion, bool]:
    """Write `agent_table` (must hold `name`) as the agent's current config and a new history version.

    Returns (version, written). When the content equals the current version's (and this is not a
    restore), nothing is written and the current version is returned with written=False.
    """
    agent = agent_table.get("name")
    if not isinstance(agent, str):
        raise ValueError("agent_table needs a string 'name'")
    content_hash = _content_hash(agent_table)
    versions = list_config_versions(paths, agent)
    current = next((v for v in versions if v.is_current), None)
    if current is not None and restored_from is None and current.content_hash == content_hash:
        return current, False
    number = (versions[-1].version if versions else 0) + 1
    stamp = (now or datetime.now(UTC)).astimezone(UTC).isoformat(timespec="seconds")
    version_table: dict[str, Any] = {"number": number, "generated_at": stamp, "content_hash": content_hash}
    if restored_from is not None:
        version_table["restored_from"] = int(restored_from)
    doc: dict[str, Any] = {"agent": agent_table, "version": version_table}
    if evidence:
        doc["evidence"] = evidence
    payload = tomli_w.dumps(doc).encode("utf-8")
    hist = history_path(paths, agent, number)
    if hist.exists():
        raise FileExistsError(f"config history version already exists: {hist}")
    write_bytes_atomic(hist, payload)  # history first: the current file always names a stored version
    current_path = write_bytes_atomic(current_config_path(paths, agent), payload)
    return (
        ConfigVersion(
            agent, number, stamp, current_path, content_hash, version_table.get("restored_from"), True
        ),
        True,
    )


def restore_agent_config(paths: LakePaths, agent: str, version: int) -> ConfigVersion:
    """Make version `version` of `agent`'s config current again (as a new version with restored_from)."""
    path = history_path(paths, agent, version)
    if not path.exists():
        known = [v.version for v in list_config_versions(paths, agent)]
        raise FileNotFoundError(f"no version {version} of the config of agent {agent!r} (versions: {known})")
    doc = read_config(path)
    if doc["agent"]["name"] != agent:
        raise ValueError(f"history file {path} belongs to agent {doc['agent']['name']!r}, not {agent!r}")
    written, _ = write_agent_config(paths, doc["agent"], doc.get("evidence"), restored_from=version)
    return written


# ------------------------------------------------------------------------------------ recommendations
@dataclass(frozen=True)
class ConfigRules:
    min_tool_share: float = 0.2
    max_tools: int = 10
    default_max_turns: int = 10
    max_turns_cap: int = 50
    min_samples: int = 10
    max_task_types: int = 3


def _num(value: Any) -> float | None:
    if value is None:
        return None
    value = float(value)
    return None if math.isnan(value) else value


def recommend_configs(
    profile: list[dict], tools: list[dict], task_types: list[dict], rules: ConfigRules
) -> list[dict]:
    """Build one recommendation per agent from the rows of the three agent_config_* models.

    Returns dicts with `agent` (the TOML [agent] table) and `evidence` (numbers behind it). One Python
    step per agent (not per event): the heavy lifting is the SQL aggregation.
    """
    tools_by_agent: dict[str, list[dict]] = {}
    for row in tools:
        tools_by_agent.setdefault(row["agent_name"], []).append(row)
    types_by_agent: dict[str, list[dict]] = {}
    for row in task_types:
        types_by_agent.setdefault(row["agent_name"], []).append(row)

    out = []
    for prof in sorted(profile, key=lambda r: r["agent_name"]):
        agent = prof["agent_name"]
        overall = _num(prof["success_rate"]) or 0.0
        chosen_tools = sorted(
            (
                t
                for t in tools_by_agent.get(agent, [])
                if (_num(t["share_of_successes"]) or 0.0) >= rules.min_tool_share
            ),
            key=lambda t: (-(_num(t["share_of_successes"]) or 0.0), -t["runs_using_tool"], t["tool"]),
        )[: rules.max_tools]
        p95 = _num(prof["turns_p95"])
        wanted = int(math.ceil(p95)) if p95 is not None else rules.default_max_turns
        max_turns = min(max(wanted, 1), rules.max_turns_cap)
        preferred = sorted(
            (
                t
                for t in types_by_agent.get(agent, [])
                if t["executions"] >= rules.min_samples and (_num(t["success_rate"]) or 0.0) >= overall
            ),
            key=lambda t: t["rank"],
        )[: rules.max_task_types]
        agent_table = {
            "name": agent,
            "tools": [t["tool"] for t in chosen_tools],
            "max_turns": max_turns,
            "preferred_task_types": [t["task_type"] for t in preferred],
        }
        evidence = {
            "executions": int(prof["executions"]),
            "successes": int(prof["successes"]),
            "success_rate": overall,
            "turns_source": prof["turns_source"] or "default",
            "turns_observed": int(prof["turns_n"] or 0),
            "tool_share_of_successes": {t["tool"]: _num(t["share_of_successes"]) for t in chosen_tools},
            "task_type_success_rate": {t["task_type"]: _num(t["success_rate"]) for t in preferred},
        }
        if prof["quality_mean"] is not None and _num(prof["quality_mean"]) is not None:
            evidence["quality_mean"] = _num(prof["quality_mean"])
        if p95 is not None:
            evidence["turns_p95"] = p95
        out.append({"agent": agent_table, "evidence": evidence})
    return out
