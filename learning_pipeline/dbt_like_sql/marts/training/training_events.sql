-- materialized: view
-- The validated events with the fields training data needs besides the staged ones: JSON input/output,
-- metadata (model, tools, turns), tags and retry counts. task_type is the staged effective task class.
-- model: metadata.model, 'unspecified' when absent; complexity: context.complexity (NULL when absent).
-- Vars start_date / end_date (inclusive) restrict the scan to a range of event_date partitions.
select
    s.*,
    o.action_type,
    o."input" as input_json,
    o."output" as output_json,
    o.metadata,
    o.tags,
    o.retry_count,
    coalesce(nullif(json_extract_string(o.metadata, '$.model'), ''), 'unspecified') as model,
    nullif(json_extract_string(s.context, '$.complexity'), '') as complexity
from {{ ref('stg_outcome_events') }} as s
join {{ source('outcome_events') }} as o
    on o.event_id = s.event_id
   and cast(o.event_date as date) = s.event_date
where o.event_date >= cast({{ var('start_date', '1970-01-01') }} as date)
  and o.event_date <= cast({{ var('end_date', '9999-12-31') }} as date)
