-- materialized: view
-- Successful events as supervised fine-tuning candidates, input/output as text:
-- a JSON string becomes its text, any other JSON value its compact JSON; JSON null, empty or
-- whitespace-only text, {} and [] count as missing (NULL).
-- Filtering by quality, PII redaction and de-duplication happen downstream (lib/training_data.py).
select
    event_id,
    event_date,
    event_time,
    agent_name,
    task_type,
    model,
    quality_score,
    nullif(nullif(nullif(trim(
        case
            when input_json is null then null
            when not json_valid(input_json) then input_json
            when json_type(input_json) = 'VARCHAR' then json_extract_string(input_json, '$')
            when json_type(input_json) = 'NULL' then null
            else cast(json(input_json) as varchar)
        end), ''), '{}'), '[]') as input_text,
    nullif(nullif(nullif(trim(
        case
            when output_json is null then null
            when not json_valid(output_json) then output_json
            when json_type(output_json) = 'VARCHAR' then json_extract_string(output_json, '$')
            when json_type(output_json) = 'NULL' then null
            else cast(json(output_json) as varchar)
        end), ''), '{}'), '[]') as output_text
from {{ ref('training_events') }}
where status = 'success'
