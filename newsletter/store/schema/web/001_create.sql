-- What `serve` keeps on PostgreSQL, shared by every instance behind one proxy: provider and
-- web events, opt-in requests, the opt-out journal, and the index from a link's address id
-- to the row it names. The lists themselves are the `lists` component's `subscribers`.

-- Every provider event (once per source and id: retries and replays change nothing) and web
-- action (unsubscribe, resubscribe, confirm, ...), as the files store's events.sqlite3.
CREATE TABLE web_events (
    id bigserial PRIMARY KEY,
    source text NOT NULL,
    event_id text NOT NULL,
    event text NOT NULL,
    email text,
    list text,
    issue text,
    occurred_at text,
    received_at timestamptz NOT NULL DEFAULT now(),
    payload jsonb NOT NULL DEFAULT '{}',
    UNIQUE (source, event_id)
);
CREATE INDEX web_events_email ON web_events (email);
CREATE INDEX web_events_kind ON web_events (event, occurred_at);

-- Open subscribe requests, one per (list, address id): what a confirmation link may confirm.
CREATE TABLE web_optin_requests (
    list text NOT NULL,
    address_id text NOT NULL,
    request_id text NOT NULL,
    row_status text NOT NULL,
    row_updated text NOT NULL,
    requested_at timestamptz NOT NULL DEFAULT now(),
    confirmed_at timestamptz,
    PRIMARY KEY (list, address_id)
);

-- Unsubscribes by (list, address id), as a link names them; the row changes in the same
-- transaction. Kept until they subscribe again (resubscribe, a confirmed opt-in) or `forget`.
CREATE TABLE web_unsubscribes (
    list text NOT NULL,
    address_id text NOT NULL,
    key text,  -- the row's key (NULL: no row had this id when it came)
    via text NOT NULL,
    at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (list, address_id)
);
CREATE INDEX web_unsubscribes_key ON web_unsubscribes (key);

-- Provider actions (bounces, complaints, unsubscribes) as the files store's journal keeps
-- them; on PostgreSQL they are applied to `subscribers` in the same transaction.
CREATE TABLE web_actions (
    id bigserial PRIMARY KEY,
    key text NOT NULL,
    status text NOT NULL,
    list text,  -- NULL: every list
    reason text,  -- the suppression it called for
    at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX web_actions_key ON web_actions (key);

-- A link carries address_id(secret, list, key), never the address: this finds the row in one
-- lookup. Filled by `serve` for rows it has not seen (at start and when an id is missing).
CREATE TABLE web_address_ids (
    list text NOT NULL,
    address_id text NOT NULL,
    key text NOT NULL,
    PRIMARY KEY (list, address_id)
);
CREATE INDEX web_address_ids_key ON web_address_ids (list, key);
