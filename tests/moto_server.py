"""moto's server, with the GuardDuty calls gdq needs and moto lacks (DESIGN §6).

Run as `python tests/moto_server.py -H 127.0.0.1 -p PORT` (the test harness does). It is
moto's own server; this file only adds, before it starts:

- GuardDuty publishing destinations (Create/List/Describe/Update/DeletePublishingDestination),
  stored on moto's detector. The status is PUBLISHING while the bucket and the KMS key exist
  in moto, in one region (the key's region is read from its ARN, so a detector of another
  region can export there), UNABLE_TO_PUBLISH_FIX_DESTINATION_PROPERTY otherwise, as
  GuardDuty reports a destination it cannot write to.
- GuardDuty's organization configuration (Update/DescribeOrganizationConfiguration on
  `/detector/<id>/admin`), stored on moto's detector, refused unless the caller is the
  delegated administrator that the organization's management account enabled in that
  region with moto's own EnableOrganizationAdminAccount.
- CreateSampleFindings, which behaves like GuardDuty's export of the samples: one gzip JSON
  Lines object of sample findings (`service.additionalInfo.sample = true`), SSE-KMS with the
  destination's key, under `[prefix/]AWSLogs/<account>/GuardDuty/<region>/YYYY/MM/DD/`, put
  through moto's S3 so that the bucket's notifications fire as they would in AWS.
- GetBucketNotificationConfiguration of a bucket without one answers S3's empty
  `<NotificationConfiguration/>`; moto 5.2 answers a root element no SDK parses.
- Bucket-policy enforcement switched off: moto counts a statement with a condition it cannot
  evaluate (aws:SecureTransport, aws:SourceArn) as a deny, so a bucket carrying gdq's real
  policy would refuse every object call. Tests check the policy documents instead.

S3, SQS, KMS, SNS, EventBridge and the rest of GuardDuty stay moto's implementations.
"""

import copy
import datetime
import gzip
import json
import pathlib
import sys
import uuid

from moto.guardduty import urls
from moto.guardduty.exceptions import DetectorNotFoundException
from moto.guardduty.models import guardduty_backends
from moto.guardduty.responses import GuardDutyResponse
from moto.iam.access_control import PermissionResult
from moto.kms.models import kms_backends
from moto.organizations.models import organizations_backends
from moto.s3.models import FakeBucket, s3_backends
from moto.s3.responses import S3Response
from moto.utilities.utils import get_partition

SAMPLES = pathlib.Path(__file__).resolve().parent.parent / "testdata" / "samples-panther-analysis.jsonl"

urls.url_paths.update(
    {
        "{0}/detector/(?P<detector_id>[^/]+)/publishingDestination$": GuardDutyResponse.dispatch,
        "{0}/detector/(?P<detector_id>[^/]+)/publishingDestination/(?P<destination_id>[^/]+)$": GuardDutyResponse.dispatch,
        "{0}/detector/(?P<detector_id>[^/]+)/findings/create$": GuardDutyResponse.dispatch,
        "{0}/detector/(?P<detector_id>[^/]+)/admin$": GuardDutyResponse.dispatch,
    }
)


def _no_bucket_policy_enforcement(self, action, resource):
    return PermissionResult.NEUTRAL


FakeBucket.get_permission = _no_bucket_policy_enforcement

_moto_get_bucket_notification = S3Response.get_bucket_notification
EMPTY_NOTIFICATION = (
    '<?xml version="1.0" encoding="UTF-8"?>\n'
    '<NotificationConfiguration xmlns="http://s3.amazonaws.com/doc/2006-03-01/"/>'
)


def _get_bucket_notification(self):
    if not self.backend.get_bucket_notification_configuration(self.bucket_name):
        return 200, {"Content-Type": "application/xml"}, EMPTY_NOTIFICATION
    return _moto_get_bucket_notification(self)


S3Response.get_bucket_notification = _get_bucket_notification


def _error(status, kind, message):
    return status, {"x-amzn-ErrorType": kind}, json.dumps({"__type": kind, "message": message})


def _detector(response, detector_id):
    backend = guardduty_backends[response.current_account][response.region]
    detector = backend.get_detector(detector_id)
    if not hasattr(detector, "gdq_destinations"):
        detector.gdq_destinations = {}
    return detector


def _split_arn(destination_arn):
    """arn:aws:s3:::bucket[/prefix] -> (bucket, prefix)."""
    path = destination_arn.split(":::", 1)[-1]
    bucket, _, prefix = path.partition("/")
    return bucket, prefix.strip("/")


def _status(response, destination):
    bucket, _ = _split_arn(destination["destinationProperties"].get("destinationArn", ""))
    key_arn = destination["destinationProperties"].get("kmsKeyArn", "")
    s3 = s3_backends[response.current_account][get_partition(response.region)]
    # arn:aws:kms:<region>:<account>:key/<id>: the key may be in another region than the
    # detector, but must be in the bucket's (GuardDuty's rule).
    parts = key_arn.split(":")
    key_region = parts[3] if len(parts) > 5 else response.region
    kms = kms_backends[response.current_account][key_region]
    bucket_region = s3.buckets[bucket].region_name if bucket in s3.buckets else None
    key_id = key_arn.rsplit("/", 1)[-1]
    key_exists = key_id in kms.keys and kms.keys[key_id].key_state == "Enabled"
    if bucket_region == key_region and key_exists:
        return "PUBLISHING"
    return "UNABLE_TO_PUBLISH_FIX_DESTINATION_PROPERTY"


def _described(response, destination):
    return {
        "destinationId": destination["destinationId"],
        "destinationType": destination["destinationType"],
        "status": _status(response, destination),
        "publishingFailureStartTimestamp": 0,
        "destinationProperties": destination["destinationProperties"],
    }


def _ids(response):
    parts = response.path.split("/")
    detector_id = parts[2]
    destination_id = parts[4] if len(parts) > 4 else None
    return detector_id, destination_id


def create_publishing_destination(self):
    detector_id, _ = _ids(self)
    try:
        detector = _detector(self, detector_id)
    except DetectorNotFoundException:
        return _error(400, "BadRequestException", f"detector {detector_id} not found")
    if detector.gdq_destinations:
        return _error(400, "BadRequestException", "the detector already has a publishing destination")
    destination_id = uuid.uuid4().hex
    detector.gdq_destinations[destination_id] = {
        "destinationId": destination_id,
        "destinationType": self._get_param("destinationType"),
        "destinationProperties": self._get_param("destinationProperties") or {},
    }
    return json.dumps({"destinationId": destination_id})


def list_publishing_destinations(self):
    detector_id, _ = _ids(self)
    detector = _detector(self, detector_id)
    listed = [
        {k: v for k, v in _described(self, d).items() if k in ("destinationId", "destinationType", "status")}
        for d in detector.gdq_destinations.values()
    ]
    return json.dumps({"destinations": listed})


def describe_publishing_destination(self):
    detector_id, destination_id = _ids(self)
    destination = _detector(self, detector_id).gdq_destinations.get(destination_id)
    if destination is None:
        return _error(400, "BadRequestException", f"destination {destination_id} not found")
    return json.dumps(_described(self, destination))


def update_publishing_destination(self):
    detector_id, destination_id = _ids(self)
    destination = _detector(self, detector_id).gdq_destinations.get(destination_id)
    if destination is None:
        return _error(400, "BadRequestException", f"destination {destination_id} not found")
    properties = self._get_param("destinationProperties")
    if properties:
        destination["destinationProperties"] = properties
    return "{}"


def delete_publishing_destination(self):
    detector_id, destination_id = _ids(self)
    if _detector(self, detector_id).gdq_destinations.pop(destination_id, None) is None:
        return _error(400, "BadRequestException", f"destination {destination_id} not found")
    return "{}"


def _is_delegated_administrator(response):
    """Whether the caller is the GuardDuty administrator its organization's management
    account enabled in this region."""
    account = response.current_account
    partition = get_partition(response.region)
    management = organizations_backends.master_accounts.get(account, (None,))[0]
    if management is None:
        org = organizations_backends[account][partition].org
        management = org.master_account_id if org else None
    if management is None:
        return False
    backend = guardduty_backends[management][response.region]
    return account in backend.admin_account_ids


def _admin_detector(response):
    """The caller's detector, or the error GuardDuty answers when the caller is not the
    delegated administrator (or has no such detector)."""
    detector_id, _ = _ids(response)
    try:
        detector = _detector(response, detector_id)
    except DetectorNotFoundException:
        return None, _error(400, "BadRequestException", f"detector {detector_id} not found")
    if not _is_delegated_administrator(response):
        return None, _error(
            400,
            "BadRequestException",
            "The request is rejected because the current account is not the GuardDuty "
            "delegated administrator of an organization.",
        )
    return detector, None


def update_organization_configuration(self):
    detector, error = _admin_detector(self)
    if error:
        return error
    members = self._get_param("autoEnableOrganizationMembers") or (
        "NEW" if self._get_param("autoEnable") else "NONE"
    )
    features = {f["name"]: f.get("autoEnable", "NONE") for f in self._get_param("features") or []}
    config = getattr(detector, "gdq_org_config", {"members": "NONE", "features": {}})
    config["members"] = members
    config["features"].update(features)
    detector.gdq_org_config = config
    return "{}"


def describe_organization_configuration(self):
    detector, error = _admin_detector(self)
    if error:
        return error
    config = getattr(detector, "gdq_org_config", {"members": "NONE", "features": {}})
    return json.dumps(
        {
            "autoEnable": config["members"] in ("NEW", "ALL"),
            "autoEnableOrganizationMembers": config["members"],
            "memberAccountLimitReached": False,
            "features": [{"name": n, "autoEnable": a} for n, a in config["features"].items()],
        }
    )


def _sample_findings(account, region, detector_id, types):
    templates = [json.loads(line) for line in SAMPLES.read_text().splitlines() if line.strip()]
    by_type = {}
    for t in templates:
        by_type.setdefault(t["type"], t)
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
    findings = []
    for finding_type in types or list(by_type):
        finding = copy.deepcopy(by_type.get(finding_type, templates[0]))
        finding_id = uuid.uuid4().hex
        finding.update(
            {
                "type": finding_type,
                "id": finding_id,
                "accountId": account,
                "region": region,
                "partition": "aws",
                "arn": f"arn:aws:guardduty:{region}:{account}:detector/{detector_id}/finding/{finding_id}",
                "createdAt": now,
                "updatedAt": now,
            }
        )
        service = finding.setdefault("service", {})
        service["detectorId"] = detector_id
        service.setdefault("additionalInfo", {})["sample"] = True
        findings.append(finding)
    return findings


def create_sample_findings(self):
    detector_id, _ = _ids(self)
    try:
        detector = _detector(self, detector_id)
    except DetectorNotFoundException:
        return _error(400, "BadRequestException", f"detector {detector_id} not found")
    findings = _sample_findings(self.current_account, self.region, detector_id, self._get_param("findingTypes"))
    for destination in detector.gdq_destinations.values():
        if _status(self, destination) != "PUBLISHING":
            continue
        properties = destination["destinationProperties"]
        bucket, prefix = _split_arn(properties["destinationArn"])
        day = datetime.datetime.now(datetime.timezone.utc).strftime("%Y/%m/%d")
        key = f"AWSLogs/{self.current_account}/GuardDuty/{self.region}/{day}/{uuid.uuid4()}.jsonl.gz"
        if prefix:
            key = f"{prefix}/{key}"
        body = gzip.compress("".join(json.dumps(f) + "\n" for f in findings).encode())
        s3_backends[self.current_account][get_partition(self.region)].put_object(
            bucket,
            key,
            body,
            encryption="aws:kms",
            kms_key_id=properties["kmsKeyArn"],
        )
    return "{}"


for handler in (
    create_publishing_destination,
    list_publishing_destinations,
    describe_publishing_destination,
    update_publishing_destination,
    delete_publishing_destination,
    create_sample_findings,
    update_organization_configuration,
    describe_organization_configuration,
):
    setattr(GuardDutyResponse, handler.__name__, handler)


if __name__ == "__main__":
    from moto.server import main

    main(sys.argv[1:])
