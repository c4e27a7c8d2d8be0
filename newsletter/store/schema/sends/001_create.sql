-- The send ledger on PostgreSQL, shared by every sender of a send (newsletter/sending/pg*.py).

-- One `newsletter send` process taking part in a send. Its lease is renewed while it works;
-- once it runs out the sender counts as dead: what it had claimed goes back to the plan,
-- what it had handed over without an answer becomes `unknown`.
CREATE TABLE send_senders (
    id bigserial PRIMARY KEY,
    issue text NOT NULL,
    list text NOT NULL,
    host text NOT NULL,
    pid integer NOT NULL,
    started_at timestamptz NOT NULL DEFAULT now(),
    heartbeat timestamptz NOT NULL DEFAULT now(),
    lease_until timestamptz NOT NULL,
    finished_at timestamptz,
    outcome text  -- ok, incomplete, interrupted, ... or lost (its lease ran out)
);
CREATE INDEX send_senders_live ON send_senders (issue) WHERE finished_at IS NULL;

-- A run of a sender (as the files store's ledger has runs); `origin` marks a pushed run.
CREATE TABLE send_runs (
    id bigserial PRIMARY KEY,
    issue text NOT NULL,
    list text NOT NULL,
    provider text NOT NULL,
    sender bigint REFERENCES send_senders (id),
    started_at timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz,
    outcome text,
    origin text UNIQUE,
    segment text  -- the --segment (or front matter `segment:`) it sent to; NULL: the whole list
);

-- The plan of a send: made once (under an advisory lock) and joined by later senders while
-- any of it is open. `next_slot` is the send-wide --rate: the time the next message may go.
CREATE TABLE send_plans (
    issue text NOT NULL,
    list text NOT NULL,
    planned_at timestamptz NOT NULL DEFAULT now(),
    planned_by bigint REFERENCES send_senders (id),
    recipients bigint NOT NULL DEFAULT 0,
    next_slot timestamptz,
    PRIMARY KEY (issue, list)
);

-- A row per recipient of an issue. States: planned (waiting for a sender), claimed (in a
-- sender's batch, not handed over), in_flight (marked before the provider sees it; `handed`
-- once the request carrying it went out), then sent, failed, retry, unknown, invalid.
CREATE TABLE send_recipients (
    issue text NOT NULL,
    key text NOT NULL,
    list text NOT NULL,
    email text NOT NULL,
    name text NOT NULL DEFAULT '',
    fields jsonb,  -- the merge fields, so that any sender can build the message
    position bigint NOT NULL DEFAULT 0,  -- order in the list: batches go out in list order
    state text NOT NULL,
    attempts integer NOT NULL DEFAULT 0,
    handed boolean NOT NULL DEFAULT false,
    provider_id text,
    run bigint,
    sender bigint,
    lease_until timestamptz,
    batch integer,
    first_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    sent_at timestamptz,
    error text,
    PRIMARY KEY (issue, key)
);
-- Claiming: the next planned rows of a send in list order.
CREATE INDEX send_recipients_planned ON send_recipients (issue, list, position)
    WHERE state = 'planned';
-- A sender's open rows: renewing, finishing, and settling a dead sender.
CREATE INDEX send_recipients_open ON send_recipients (sender)
    WHERE state IN ('claimed', 'in_flight');
CREATE INDEX send_recipients_state ON send_recipients (issue, list, state);
