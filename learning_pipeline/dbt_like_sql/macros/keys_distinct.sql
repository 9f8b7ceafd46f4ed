-- keys_distinct(n_distinct, n, message): true when n rows hold n_distinct distinct keys, else the query fails
-- with `message`. Guards hash keys against collisions: `qualify keys_distinct(count(distinct key) over (),
-- count(*) over (), '...')`.
create or replace macro keys_distinct(n_distinct, n, message) as
    case when n_distinct = n then true else error(message) end;
