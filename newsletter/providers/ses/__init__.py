"""Amazon SES (v2 API through boto3): sending, and bounce/complaint events through SNS."""
