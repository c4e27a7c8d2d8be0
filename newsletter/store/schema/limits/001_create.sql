-- Rate limits that several `serve` instances share: one row per counted event, pruned by age.
CREATE TABLE rate_limit_hits (
    scope text NOT NULL,
    key text NOT NULL,
    at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX rate_limit_hits_scope_key_at ON rate_limit_hits (scope, key, at);
