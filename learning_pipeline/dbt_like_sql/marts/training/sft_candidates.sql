-- materialized: view
-- Successful events as supervised fine-tuning candidates, input/output as text (macro json_text):
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
    json_text(input_json) as input_text,
    json_text(output_json) as output_text
from {{ ref('training_events') }}
where status = 'success'
