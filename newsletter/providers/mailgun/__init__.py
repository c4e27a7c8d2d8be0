"""Mailgun: the Messages API (batch sending with recipient-variables) and its webhooks."""
