"""SendGrid: Mail Send, the suppression sync and the webhook's signature, over one api module."""
