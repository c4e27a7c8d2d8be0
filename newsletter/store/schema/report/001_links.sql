-- The links of an issue's HTML part as it was last sent to a list (the files store keeps them
-- in .newsletter/links/<issue>.json): `report` names a clicked link by its text, and `serve`
-- redirects a tracked click only to a destination listed here for the token's issue. In the
-- store so that serve and report work on any machine, not only on the one that sent.
CREATE TABLE issue_links (
    issue text NOT NULL,
    position integer NOT NULL,  -- order in the message
    url text NOT NULL,
    text text NOT NULL,
    PRIMARY KEY (issue, position)
);
CREATE INDEX issue_links_url ON issue_links (issue, url);
