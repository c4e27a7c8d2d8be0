-- Subscriber lists and suppressions: what subscribers/*.csv and subscribers/suppressions.csv
-- hold on the files store. Values are kept as the CSV cells hold them (text, ISO 8601 dates
-- as written), so `store pull` writes a pushed list back byte for byte.

-- One row per list: its header as written (custom columns in their order), and the file's
-- BOM and line ending, so a pulled or exported list looks like the one pushed.
CREATE TABLE subscriber_lists (
    name text PRIMARY KEY,
    columns text[] NOT NULL,
    bom boolean NOT NULL DEFAULT false,
    newline text NOT NULL DEFAULT E'\n'
);

-- The shape issue 17's segments rely on: keep it.
CREATE TABLE subscribers (
    list text NOT NULL REFERENCES subscriber_lists (name) ON DELETE CASCADE,
    key text NOT NULL,                    -- email_key(email): identity within a list
    email text NOT NULL,
    name text NOT NULL DEFAULT '',
    status text NOT NULL DEFAULT 'subscribed',
    subscribed_at text NOT NULL DEFAULT '',
    updated_at text NOT NULL DEFAULT '',
    source text NOT NULL DEFAULT '',
    fields jsonb NOT NULL DEFAULT '{}',   -- custom columns with a value
    tags text[] NOT NULL DEFAULT '{}',    -- the CSV's `tags` cell, split at commas
    position bigint NOT NULL,             -- CSV order (a pushed row keeps its line number)
    PRIMARY KEY (list, key)
);
-- Streaming one list in order (sending, export, pull) and counting it by status.
CREATE INDEX subscribers_list_position ON subscribers (list, position, key);
CREATE INDEX subscribers_list_status ON subscribers (list, status);

-- Addresses (by key) and the sha256: hashes `forget` leaves, never mailed from any list.
CREATE TABLE suppressions (
    key text PRIMARY KEY,                 -- email_key(email), or 'sha256:<hex>' when erased
    email text NOT NULL,                  -- as written (the hash itself when erased)
    reason text NOT NULL DEFAULT '',
    at text NOT NULL DEFAULT '',
    position bigserial NOT NULL           -- file order, for `store pull`
);
