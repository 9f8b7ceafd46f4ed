-- context_buckets(context, context_keys): the (context_key, context_value) buckets a context JSON text counts
-- in: once at the broad level ('*', '*') and once per key of context_keys whose value is present.
-- Expand rows with `unnest(context_buckets(context, keys), recursive := true)`.
create or replace macro context_buckets(context, context_keys) as
    list_filter(
        list_transform(
            ['*'] || context_keys,
            lambda k: {
                'context_key': k,
                'context_value': case when k = '*' then '*' else json_extract_string(context, k) end
            }
        ),
        lambda b: b.context_value is not null
    );
