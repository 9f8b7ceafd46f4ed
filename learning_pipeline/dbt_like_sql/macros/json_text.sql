-- json_text(value): a JSON value as text: a JSON string becomes its text, any other JSON value its compact
-- JSON, text that is not JSON stays as it is; JSON null, empty or whitespace-only text, {} and [] are NULL.
create or replace macro json_text(value) as
    nullif(nullif(nullif(trim(
        case
            when value is null then null
            when not json_valid(value) then value
            when json_type(value) = 'VARCHAR' then json_extract_string(value, '$')
            when json_type(value) = 'NULL' then null
            else cast(json(value) as varchar)
        end), ''), '{}'), '[]');
