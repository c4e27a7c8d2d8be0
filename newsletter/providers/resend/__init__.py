"""Resend: batch sends through the official SDK, and its Svix-signed webhooks."""
