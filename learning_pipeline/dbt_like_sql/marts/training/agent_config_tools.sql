-- materialized: view
-- Tool usage per agent: tools come from metadata.tools (a JSON array of names) and from tags spelled
-- 'tool:<name>'; each tool counts once per event. share_of_successes = successful runs using the tool /
-- successful runs of the agent; success_rate_when_used = successes / runs using the tool.
with runs as (
    select
        agent_name,
        status,
        list_distinct(list_filter(list_transform(
            coalesce(
                case when json_type(metadata, '$.tools') = 'ARRAY'
                     then from_json(json_extract(metadata, '$.tools'), '["VARCHAR"]') end,
                []::varchar[]
            )
            || coalesce(
                list_transform(list_filter(tags, lambda t: starts_with(t, 'tool:')), lambda t: substr(t, 6)),
                []::varchar[]
            ),
            lambda t: trim(t)), lambda t: t is not null and t <> '')) as tools
    from {{ ref('training_events') }}
),
agents as (
    select agent_name, count(*) filter (where status = 'success') as agent_successes
    from runs
    group by agent_name
),
uses as (
    select agent_name, status, unnest(tools) as tool from runs
)
select
    u.agent_name,
    u.tool,
    count(*) as runs_using_tool,
    count(*) filter (where u.status = 'success') as successful_runs_using_tool,
    count(*) filter (where u.status = 'success') / count(*) as success_rate_when_used,
    case when a.agent_successes > 0
         then count(*) filter (where u.status = 'success') / a.agent_successes end as share_of_successes
from uses as u
join agents as a using (agent_name)
group by u.agent_name, u.tool, a.agent_successes
