"""simple-salesforce against crmflow's Salesforce simulator.

Run by connectors/salesforce/tests/sim/python.rs with SF_INSTANCE_URL, SF_SESSION_ID, SF_CA (the simulator's
CA certificate), SF_USERNAME, SF_PASSWORD and SF_SECURITY_TOKEN. Prints one "<call> ok" line per check and
exits non-zero on the first failure.
"""
import datetime
import os

import requests
from requests.adapters import HTTPAdapter
from simple_salesforce import Salesforce

inst = os.environ["SF_INSTANCE_URL"]
ca = os.environ["SF_CA"]

session = requests.Session()
session.verify = ca
sf = Salesforce(instance_url=inst, session_id=os.environ["SF_SESSION_ID"], session=session)

soql = "SELECT Id, LastName, SystemModstamp FROM Contact ORDER BY SystemModstamp, Id"
first = sf.query(soql, headers={"Sforce-Query-Options": "batchSize=200"})
assert len(first["records"]) == 200 and not first["done"], first["totalSize"]
assert first["records"][0]["attributes"]["type"] == "Contact"
print("query ok")

second = sf.query_more(first["nextRecordsUrl"], identifier_is_url=True)
assert second["records"][0]["Id"] != first["records"][-1]["Id"]
print("query_more ok")

everything = sf.query_all(soql)
live = everything["totalSize"]
assert len(everything["records"]) == live > 200
with_deleted = sf.query_all(soql, include_deleted=True)
assert with_deleted["totalSize"] > live, (with_deleted["totalSize"], live)
assert any(r.get("Id") for r in with_deleted["records"])
print("query_all ok")

some_id = first["records"][0]["Id"]
rec = sf.Contact.get(some_id)
assert rec["Id"] == some_id and "Email" in rec
print("get ok")

now = datetime.datetime.now(datetime.timezone.utc)
start = now - datetime.timedelta(days=25)
end = now + datetime.timedelta(minutes=2)
updated = sf.Contact.updated(start, end)
assert len(updated["ids"]) > 0 and "latestDateCovered" in updated
print("updated ok")

deleted = sf.Contact.deleted(now - datetime.timedelta(days=10), end)
assert "earliestDateAvailable" in deleted and isinstance(deleted["deletedRecords"], list)
print("deleted ok")


class ToSimulator(HTTPAdapter):
    """simple-salesforce logs in at https://{domain}.salesforce.com; send that host to the simulator."""

    def send(self, request, **kwargs):
        request.url = request.url.replace("https://login.salesforce.com", inst)
        return super().send(request, **kwargs)


login_session = requests.Session()
login_session.verify = ca
login_session.mount("https://login.salesforce.com", ToSimulator())
sf2 = Salesforce(
    username=os.environ["SF_USERNAME"],
    password=os.environ["SF_PASSWORD"],
    security_token=os.environ["SF_SECURITY_TOKEN"],
    domain="login",
    session=login_session,
)
assert sf2.sf_instance == inst.replace("https://", ""), sf2.sf_instance
count = sf2.query("SELECT COUNT() FROM Contact")["totalSize"]
assert count == live, (count, live)
print("soap login ok")
