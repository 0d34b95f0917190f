"""What the boto3 client scripts share: a client of the emulator, and how a
ClientError is reported."""

import boto3
from botocore.config import Config


def client(service, endpoint):
    """A boto3 client of `service` at the emulator, with static test
    credentials and one attempt: faults must surface, not be retried away."""
    return boto3.client(
        service,
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="AKIDBOTO3EXAMPLE",
        aws_secret_access_key="boto3-example-secret",
        config=Config(retries={"total_max_attempts": 1}),
    )


def described(client, error):
    """A ClientError as the tests compare it: the exception class, the error
    code, the HTTP status, and whether boto3 modeled it."""
    return {
        "Exception": type(error).__name__,
        "Code": error.response["Error"]["Code"],
        "Status": error.response["ResponseMetadata"]["HTTPStatusCode"],
        "Modeled": isinstance(error, getattr(client.exceptions, type(error).__name__, ())),
    }
