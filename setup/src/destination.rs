//! Step 4: the detector's publishing destination: this bucket and prefix, this key.

use aws_sdk_guardduty::types::{DestinationProperties, DestinationType};

use crate::error::{SetupError, aws};
use crate::policy::{DetectorRef, Names};
use crate::report::Report;

const STEP: &str = "destination";

/// Stands for the destination a dry run would create.
pub const PLANNED: &str = "<new-destination-id>";

/// The destination ARN GuardDuty takes: the bucket, then the prefix if any.
pub fn destination_arn(n: &Names) -> String {
    if n.prefix.is_empty() {
        n.bucket_arn()
    } else {
        format!("{}/{}", n.bucket_arn(), n.prefix)
    }
}

/// A publishing destination as GuardDuty describes it.
#[derive(Debug, Clone, PartialEq)]
pub struct Destination {
    pub id: String,
    pub status: String,
    pub destination_arn: String,
    pub key_arn: String,
}

/// The detector's S3 destination (GuardDuty allows one), described.
pub async fn find(
    c: &aws_sdk_guardduty::Client,
    detector_id: &str,
) -> Result<Option<Destination>, SetupError> {
    let listed = c
        .list_publishing_destinations()
        .detector_id(detector_id)
        .send()
        .await
        .map_err(aws("guardduty:ListPublishingDestinations"))?;
    let Some(id) = listed
        .destinations()
        .iter()
        .find(|d| d.destination_type() == Some(&DestinationType::S3))
        .and_then(|d| d.destination_id().map(str::to_string))
    else {
        return Ok(None);
    };
    describe(c, detector_id, &id).await.map(Some)
}

pub async fn describe(
    c: &aws_sdk_guardduty::Client,
    detector_id: &str,
    id: &str,
) -> Result<Destination, SetupError> {
    let d = c
        .describe_publishing_destination()
        .detector_id(detector_id)
        .destination_id(id)
        .send()
        .await
        .map_err(aws("guardduty:DescribePublishingDestination"))?;
    let properties = d.destination_properties();
    Ok(Destination {
        id: id.to_string(),
        status: d
            .status()
            .map(|s| s.as_str())
            .unwrap_or("UNKNOWN")
            .to_string(),
        destination_arn: properties
            .and_then(|p| p.destination_arn())
            .unwrap_or_default()
            .to_string(),
        key_arn: properties
            .and_then(|p| p.kms_key_arn())
            .unwrap_or_default()
            .to_string(),
    })
}

/// Creates `detector`'s destination or points the existing one here; returns its id. `c`
/// is GuardDuty in the detector's region.
pub async fn ensure(
    c: &aws_sdk_guardduty::Client,
    r: &mut Report<'_>,
    names: &Names,
    detector: &DetectorRef,
    detector_exists: bool,
) -> Result<String, SetupError> {
    let arn = destination_arn(names);
    let properties = DestinationProperties::builder()
        .destination_arn(&arn)
        .kms_key_arn(&names.key_arn)
        .build();
    let current = if detector_exists {
        find(c, &detector.id).await?
    } else {
        None
    };
    match current {
        Some(d) if d.destination_arn == arn && d.key_arn == names.key_arn => {
            r.found(STEP, format!("{} → {arn} ({})", d.id, d.status));
            Ok(d.id)
        }
        Some(d) => {
            if !r.dry_run {
                c.update_publishing_destination()
                    .detector_id(&detector.id)
                    .destination_id(&d.id)
                    .destination_properties(properties)
                    .send()
                    .await
                    .map_err(aws("guardduty:UpdatePublishingDestination"))?;
            }
            r.change(
                STEP,
                format!(
                    "{}: {} with {} → {arn} with {}",
                    d.id, d.destination_arn, d.key_arn, names.key_arn
                ),
            );
            Ok(d.id)
        }
        None => {
            let id = if r.dry_run {
                PLANNED.to_string()
            } else {
                c.create_publishing_destination()
                    .detector_id(&detector.id)
                    .destination_type(DestinationType::S3)
                    .destination_properties(properties)
                    .send()
                    .await
                    .map_err(aws("guardduty:CreatePublishingDestination"))?
                    .destination_id()
                    .unwrap_or_default()
                    .to_string()
            };
            r.change(
                STEP,
                format!("export findings to {arn}, encrypted with the key ({id})"),
            );
            Ok(id)
        }
    }
}
