"""Postmark: the batch Email API through postmarker, and its bounce/complaint webhooks."""
