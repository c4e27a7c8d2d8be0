"""Click and open tracking of our own, off by default ([tracking] clicks / opens).

rewrite.py turns the links of an issue's HTML part into base_url/c/<token> and adds the
base_url/o/<token> pixel; tokens.py signs what a token carries (the destination, the issue,
the list and the recipient's address id) so `serve` (web/tracking.py) needs no lookup to
answer and cannot be used as an open redirect; links.py keeps the issue's links and their
text (for the report, and the destinations serve accepts).
"""
