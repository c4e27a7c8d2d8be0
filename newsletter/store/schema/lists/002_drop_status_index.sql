-- subscribers (list, status) was meant for counting a list by status; PostgreSQL counts a
-- 1,000,000-row list as fast without it (0.54 s against 0.52 s), while every status change
-- paid for it: a web unsubscribe's row update wrote one more index entry, and 200 at once
-- during an import answered about 11 ms later at p99 (benchmarks/store_unsubscribe.py).
DROP INDEX IF EXISTS subscribers_list_status;
