"""HubSpot's official Python SDK (hubspot-api-client) against the crmflow HubSpot simulator, unchanged except
for its host. Run by connectors/hubspot/tests/python_sdk.rs, which starts the simulator and passes the facts
to check in the environment. Exits non-zero (AssertionError or an SDK exception) on the first mismatch.

Calls a sync makes: crm.contacts.basic_api.get_page (live and archived), crm.contacts.search_api.do_search
(incremental by lastmodifieddate, ascending, paged with `after`), crm.contacts.batch_api.read,
crm.objects.basic_api.get_page(object_type=<custom object>), and hubspot.utils.signature.Signature.is_valid
on a webhook request the simulator signed.
"""

import json
import os
import sys

from hubspot import HubSpot
from hubspot.crm.contacts import (
    BatchReadInputSimplePublicObjectId,
    Filter,
    FilterGroup,
    PublicObjectSearchRequest,
    SimplePublicObjectId,
)
from hubspot.crm.contacts.exceptions import ApiException
from hubspot.utils.signature import Signature

env = os.environ
HOST = env["HUBSPOT_HOST"]
TOKEN = env["HUBSPOT_TOKEN"]
JOBS_TYPE = env["HUBSPOT_JOBS_TYPE"]
LIVE = int(env["EXPECT_LIVE_CONTACTS"])
ARCHIVED = int(env["EXPECT_ARCHIVED_CONTACTS"])
LIVE_JOBS = int(env["EXPECT_LIVE_JOBS"])
MERGED_ID = env["MERGED_ID"]
MERGED_INTO = env["MERGED_INTO"]

api = HubSpot(access_token=TOKEN, host=HOST)
checks = []


def page_all(fetch):
    out, after = [], None
    while True:
        page = fetch(after)
        out.extend(page.results)
        if page.paging is None or page.paging.next is None:
            return out
        after = page.paging.next.after


# Live contacts, id-ordered pages of 100.
live = page_all(
    lambda after: api.crm.contacts.basic_api.get_page(
        limit=100, after=after, properties=["email", "firstname", "lastname"], archived=False
    )
)
assert len(live) == LIVE, f"live contacts: {len(live)} != {LIVE}"
assert all(not c.archived for c in live)
assert len({c.id for c in live}) == LIVE, "no duplicates across pages"
assert MERGED_ID not in {c.id for c in live}, "a merged-away contact is gone"
assert all("email" in c.properties and "hs_object_id" in c.properties for c in live)
checks.append("basic_api.get_page")

# Archived listing.
archived = page_all(
    lambda after: api.crm.contacts.basic_api.get_page(limit=50, after=after, archived=True)
)
assert len(archived) == ARCHIVED, f"archived contacts: {len(archived)} != {ARCHIVED}"
assert all(c.archived and c.archived_at is not None for c in archived)
checks.append("basic_api.get_page(archived=True)")

# Incremental search: everything modified since 0, oldest first, paged with `after`.
def search(after, sorts):
    req = PublicObjectSearchRequest(
        filter_groups=[FilterGroup(filters=[Filter(property_name="lastmodifieddate", operator="GTE", value="0")])],
        sorts=sorts,
        properties=["email", "lastmodifieddate"],
        limit=100,
        after=after,
    )
    return api.crm.contacts.search_api.do_search(public_object_search_request=req)


first = search(None, [{"propertyName": "lastmodifieddate", "direction": "ASCENDING"}])
assert first.total == LIVE, f"search total {first.total} != {LIVE}"
found = page_all(lambda after: search(after, ["lastmodifieddate"]))
assert len(found) == LIVE, f"search found {len(found)}"
stamps = [c.properties["lastmodifieddate"] for c in found]
assert stamps == sorted(stamps), "ascending by lastmodifieddate"
checks.append("search_api.do_search")

# Over the page maximum: HubSpot's 400 with its error JSON.
try:
    api.crm.contacts.search_api.do_search(public_object_search_request=PublicObjectSearchRequest(limit=10_000))
    raise AssertionError("limit over the maximum was accepted")
except ApiException as e:
    assert e.status == 400, e.status
    body = json.loads(e.body)
    assert body["status"] == "error" and body["category"] == "VALIDATION_ERROR" and body["correlationId"], body
checks.append("search_api.do_search 400")

# Batch read: found ids, a missing one (207 with errors), the merged-away id answered by the survivor.
ids = [c.id for c in live[:5]] + ["999999999", MERGED_ID]
batch = api.crm.contacts.batch_api.read(
    batch_read_input_simple_public_object_id=BatchReadInputSimplePublicObjectId(
        inputs=[SimplePublicObjectId(id=i) for i in ids], properties=["email"], properties_with_history=[]
    ),
    archived=False,
)
got = {r.id for r in batch.results}
assert set(ids[:5]) <= got, got
assert MERGED_INTO in got, f"merged id {MERGED_ID} answered by {MERGED_INTO}: {got}"
assert batch.errors and batch.errors[0].category == "OBJECT_NOT_FOUND", batch
assert "999999999" in batch.errors[0].context["ids"]
checks.append("batch_api.read")

# The custom object through the generic objects API.
jobs = page_all(
    lambda after: api.crm.objects.basic_api.get_page(
        object_type=JOBS_TYPE, limit=100, after=after, properties=["job_title", "skills"]
    )
)
assert len(jobs) == LIVE_JOBS, f"jobs: {len(jobs)} != {LIVE_JOBS}"
assert all("job_title" in j.properties for j in jobs)
checks.append("objects.basic_api.get_page(object_type)")

# A webhook request the simulator signed.
with open(env["WEBHOOK_BODY_FILE"], encoding="utf-8") as f:
    body = f.read()
events = json.loads(body)
assert isinstance(events, list) and 0 < len(events) <= 100
sig = dict(
    signature=env["WEBHOOK_SIGNATURE"],
    client_secret=env["WEBHOOK_SECRET"],
    request_body=body,
    http_uri=env["WEBHOOK_URI"],
    http_method="POST",
    signature_version="v3",
    timestamp=env["WEBHOOK_TIMESTAMP"],
)
assert Signature.is_valid(**sig), "the simulator's v3 signature verifies"
assert not Signature.is_valid(**{**sig, "request_body": body + " "}), "a changed body does not"
checks.append("Signature.is_valid v3")

print("sdk checks passed:", ", ".join(checks))
sys.exit(0)
