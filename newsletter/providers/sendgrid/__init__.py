"""SendGrid: Mail Send (mail), the suppression sync (suppressions) and the Event Webhook's
signature (webhook), all speaking to the API through one module (api)."""
