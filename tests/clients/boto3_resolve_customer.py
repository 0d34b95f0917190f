"""A seller's Python test against the standalone emulator, with boto3.

Usage: boto3_resolve_customer.py ENDPOINT

Registers tokens and scripts faults through the admin API (plain urllib, as
a test in any language would), resolves them with boto3's
`meteringmarketplace` client, and prints one JSON object: for each step, the
result (every field boto3 returns) or the error (botocore's exception class,
the error code and the HTTP status).
"""

import json
import sys

import boto3_clients
import emulator_admin

endpoint = sys.argv[1]


def admin(method, path, body=None):
    return emulator_admin.admin(endpoint, method, path, body)


client = boto3_clients.client("meteringmarketplace", endpoint)

admin("PUT", "policy", {"RedemptionPolicy": "SingleUse"})
admin(
    "POST",
    "tokens",
    {
        "RegistrationToken": "boto3-full-token",
        "CustomerAWSAccountId": "210987654321",
        "ProductCode": "prod-boto3",
        "CustomerIdentifier": "cust-boto3",
        "LicenseArn": "arn:aws:license-manager::210987654321:license:l-boto3",
        "AgreementId": "agmt-boto3",
        "ValidForSeconds": 600,
    },
)
admin(
    "POST",
    "tokens",
    {
        "RegistrationToken": "boto3-minimal-token",
        "CustomerAWSAccountId": "111122223333",
        "ProductCode": "prod-minimal",
    },
)

results = {}


def step(name, token, fault=None):
    if fault is not None:
        admin("POST", "faults", {"Fault": fault})
    try:
        answer = client.resolve_customer(RegistrationToken=token)
        answer.pop("ResponseMetadata", None)
        results[name] = {"Result": answer}
    except client.exceptions.ClientError as error:
        results[name] = boto3_clients.described(client, error)


step("full", "boto3-full-token")
step("minimal", "boto3-minimal-token")
step("resubmitted", "boto3-full-token")
step("unknown", "boto3-unknown-token")
step("throttled", "boto3-minimal-token", "ThrottlingException")
step("internal", "boto3-minimal-token", "InternalServiceErrorException")
step("disabled", "boto3-minimal-token", "DisabledApiException")

print(json.dumps(results, sort_keys=True))
