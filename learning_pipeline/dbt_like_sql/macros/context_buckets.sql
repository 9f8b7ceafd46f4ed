-- context_buckets(context, context_keys): the (context_key, context_value) buckets a context JSON text counts
-- in: once at the broad level ('*', '*'), once per key of context_keys whose value is present and, when two or
-- more of those keys have a value, once in their joint bucket: context_key = the keys sorted by name and
-- joined by '&' ('complexity&domain'), context_value = their values in that order as a JSON array
-- ('["high","legal"]'). The order of context_keys never changes the joint bucket. This is the one home of the
-- rule: the learning cycle's roll-up (lib/learning/data.py) runs this macro, and thompson's Recommender names
-- a request's joint bucket the same way (lib/bandit/contexts.py; a test compares them).
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
    )
    || joint_context_bucket(
        context, list_filter(list_sort(list_distinct(context_keys)), lambda k: json_extract_string(context, k) is not null)
    );
-- joint_context_bucket(context, present): [the joint bucket] of the sorted keys `present` (all with a value),
-- or [] for fewer than two keys.
create or replace macro joint_context_bucket(context, present) as
    case when len(present) >= 2 then [{
        'context_key': array_to_string(present, '&'),
        'context_value': to_json(list_transform(present, lambda k: json_extract_string(context, k)))::varchar
    }] else [] end;
