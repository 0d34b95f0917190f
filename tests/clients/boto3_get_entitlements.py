"""A seller's Python test of GetEntitlements against the standalone emulator.

Usage: boto3_get_entitlements.py ENDPOINT

Registers entitlements through the admin API, lists them with boto3's
`marketplace-entitlement` client (filters, every value type, the expiration,
page by page and through boto3's paginator), provokes each modeled error, and
prints one JSON object with what it saw.
"""

import datetime
import json
import sys

import boto3_clients
import emulator_admin

endpoint = sys.argv[1]


def admin(method, path, body=None):
    return emulator_admin.admin(endpoint, method, path, body)


account = "210987654321"
license_a = "arn:aws:license-manager::210987654321:license:l-a"
license_b = "arn:aws:license-manager::210987654321:license:l-b"
entitlements = [
    {"ProductCode": "prod-ent", "Dimension": "Users", "CustomerAWSAccountId": account,
     "LicenseArn": license_a, "Value": {"IntegerValue": 25}, "ExpirationDate": 1893456000},
    {"ProductCode": "prod-ent", "Dimension": "Storage", "CustomerAWSAccountId": account,
     "LicenseArn": license_a, "Value": {"DoubleValue": 1.5}},
    {"ProductCode": "prod-ent", "Dimension": "Premium", "CustomerAWSAccountId": account,
     "LicenseArn": license_b, "Value": {"BooleanValue": True}},
    {"ProductCode": "prod-ent", "Dimension": "Tier", "CustomerAWSAccountId": account,
     "LicenseArn": license_b, "Value": {"StringValue": "gold"}},
    {"ProductCode": "prod-ent", "Dimension": "Users", "CustomerAWSAccountId": "111122223333",
     "Value": {"IntegerValue": 5}},
    {"ProductCode": "prod-other", "Dimension": "Users", "CustomerAWSAccountId": account,
     "Value": {"IntegerValue": 1}},
]
for index in range(30):
    entitlements.append({"ProductCode": "prod-many", "Dimension": f"D{index:02}",
                         "CustomerIdentifier": "cust-many", "Value": {"IntegerValue": index}})
admin("POST", "entitlements", entitlements)

client = boto3_clients.client("marketplace-entitlement", endpoint)


def plain(entitlement):
    out = dict(entitlement)
    if "ExpirationDate" in out:
        out["ExpirationDate"] = out["ExpirationDate"].astimezone(datetime.timezone.utc).isoformat()
    return out


results = {}
answer = client.get_entitlements(ProductCode="prod-ent", Filter={"CUSTOMER_AWS_ACCOUNT_ID": [account]})
results["by_account"] = [plain(e) for e in answer["Entitlements"]]
answer = client.get_entitlements(ProductCode="prod-ent", Filter={"LICENSE_ARN": [license_b]})
results["by_license"] = sorted(e["Dimension"] for e in answer["Entitlements"])
answer = client.get_entitlements(
    ProductCode="prod-ent",
    Filter={"DIMENSION": ["Users", "Tier"], "CUSTOMER_AWS_ACCOUNT_ID": [account, "111122223333"]},
)
results["union_and_intersection"] = sorted(
    (e["Dimension"], e["CustomerAWSAccountId"]) for e in answer["Entitlements"]
)

pages = []
token = None
while True:
    kwargs = {"ProductCode": "prod-many", "MaxResults": 7,
              "Filter": {"CUSTOMER_IDENTIFIER": ["cust-many"]}}
    if token:
        kwargs["NextToken"] = token
    answer = client.get_entitlements(**kwargs)
    pages.append([e["Dimension"] for e in answer["Entitlements"]])
    token = answer.get("NextToken")
    if not token:
        break
results["pages"] = pages
paginated = client.get_paginator("get_entitlements").paginate(ProductCode="prod-many")
results["paginator"] = sum(len(page["Entitlements"]) for page in paginated)


def error(name, fault=None, **kwargs):
    if fault is not None:
        admin("POST", "faults", {"Fault": fault, "Operation": "GetEntitlements"})
    try:
        client.get_entitlements(**kwargs)
        results[name] = "no error"
    except client.exceptions.ClientError as caught:
        results[name] = boto3_clients.described(client, caught)


error("both_customer_filters", ProductCode="prod-ent",
      Filter={"CUSTOMER_IDENTIFIER": ["c"], "CUSTOMER_AWS_ACCOUNT_ID": [account]})
error("foreign_next_token", ProductCode="prod-ent", NextToken="not-a-token")
error("throttled", "ThrottlingException", ProductCode="prod-ent")
error("internal", "InternalServiceErrorException", ProductCode="prod-ent")

print(json.dumps(results, sort_keys=True))
