//! Step 1: the region's GuardDuty detector, enabled, at the asked publishing frequency and
//! with the asked features on. It comes first: the key and bucket policies name its ARN.

use aws_sdk_guardduty::types::{
    DetectorFeature, DetectorFeatureConfiguration, DetectorStatus, FeatureStatus,
    FindingPublishingFrequency,
};

use crate::error::{SetupError, aws};
use crate::report::Report;

/// Stands for the detector a dry run would create.
pub const PLANNED: &str = "<new-detector-id>";

const STEP: &str = "detector";

/// What the detector must be.
#[derive(Debug, Clone)]
pub struct DetectorWanted {
    pub frequency: FindingPublishingFrequency,
    /// Turned on; features not named are left as they are.
    pub features: Vec<DetectorFeature>,
}

/// The region's detector (a region has at most one), if any.
pub async fn find(c: &aws_sdk_guardduty::Client) -> Result<Option<String>, SetupError> {
    let listed = c
        .list_detectors()
        .send()
        .await
        .map_err(aws("guardduty:ListDetectors"))?;
    Ok(listed.detector_ids().first().cloned())
}

/// Creates the detector, or brings the existing one to `want`; returns its id and whether
/// it exists (not when a dry run only plans it; its id is then [`PLANNED`]).
pub async fn ensure(
    c: &aws_sdk_guardduty::Client,
    r: &mut Report<'_>,
    want: &DetectorWanted,
) -> Result<(String, bool), SetupError> {
    let features = feature_list(&want.features);
    let Some(id) = find(c).await? else {
        let what = format!(
            "create a detector: enabled, publishing every {}{features}",
            want.frequency
        );
        if r.dry_run {
            r.change(STEP, what);
            return Ok((PLANNED.to_string(), false));
        }
        let created = c
            .create_detector()
            .enable(true)
            .finding_publishing_frequency(want.frequency.clone())
            .set_features(configurations(&want.features))
            .tags("gdq:managed", "true")
            .send()
            .await
            .map_err(aws("guardduty:CreateDetector"))?;
        let id = created.detector_id().unwrap_or_default().to_string();
        r.change(
            STEP,
            format!("created {id}: enabled, every {}{features}", want.frequency),
        );
        return Ok((id, true));
    };

    let current = c
        .get_detector()
        .detector_id(&id)
        .send()
        .await
        .map_err(aws("guardduty:GetDetector"))?;
    let mut fixes = Vec::new();
    if current.status() != Some(&DetectorStatus::Enabled) {
        fixes.push("enable it".to_string());
    }
    let frequency = current
        .finding_publishing_frequency()
        .map(|f| f.as_str())
        .unwrap_or("unset");
    if frequency != want.frequency.as_str() {
        fixes.push(format!(
            "publishing frequency {frequency} → {}",
            want.frequency
        ));
    }
    let enabled: Vec<&str> = current
        .features()
        .iter()
        .filter(|f| f.status() == Some(&FeatureStatus::Enabled))
        .filter_map(|f| f.name().map(|n| n.as_str()))
        .collect();
    let missing: Vec<DetectorFeature> = want
        .features
        .iter()
        .filter(|f| !enabled.contains(&f.as_str()))
        .cloned()
        .collect();
    if !missing.is_empty() {
        fixes.push(format!(
            "turn on{}",
            feature_list(&missing).trim_start_matches(',')
        ));
    }
    if fixes.is_empty() {
        r.found(
            STEP,
            format!("{id}: enabled, every {}{features}", want.frequency),
        );
        return Ok((id, true));
    }
    if !r.dry_run {
        // Only the missing features are sent: GuardDuty changes the features named and
        // leaves the others as they are.
        c.update_detector()
            .detector_id(&id)
            .enable(true)
            .finding_publishing_frequency(want.frequency.clone())
            .set_features(configurations(&missing))
            .send()
            .await
            .map_err(aws("guardduty:UpdateDetector"))?;
    }
    r.change(STEP, format!("{id} (existing): {}", fixes.join(", ")));
    Ok((id, true))
}

fn configurations(features: &[DetectorFeature]) -> Option<Vec<DetectorFeatureConfiguration>> {
    if features.is_empty() {
        return None;
    }
    Some(
        features
            .iter()
            .map(|f| {
                DetectorFeatureConfiguration::builder()
                    .name(f.clone())
                    .status(FeatureStatus::Enabled)
                    .build()
            })
            .collect(),
    )
}

fn feature_list(features: &[DetectorFeature]) -> String {
    if features.is_empty() {
        return String::new();
    }
    let names: Vec<&str> = features.iter().map(|f| f.as_str()).collect();
    format!(", features {}", names.join(" "))
}

/// `FIFTEEN_MINUTES`, `ONE_HOUR` or `SIX_HOURS`.
pub fn parse_frequency(text: &str) -> Result<FindingPublishingFrequency, SetupError> {
    let known = FindingPublishingFrequency::values();
    if known.contains(&text) {
        Ok(FindingPublishingFrequency::from(text))
    } else {
        Err(SetupError::Usage(format!(
            "--frequency {text:?}: expected one of {}",
            known.join(", ")
        )))
    }
}

/// A GuardDuty detector feature name, e.g. `S3_DATA_EVENTS`, `RUNTIME_MONITORING`.
pub fn parse_feature(text: &str) -> Result<DetectorFeature, SetupError> {
    let upper = text.to_ascii_uppercase().replace('-', "_");
    let known = DetectorFeature::values();
    if known.contains(&upper.as_str()) {
        Ok(DetectorFeature::from(upper.as_str()))
    } else {
        Err(SetupError::Usage(format!(
            "--features {text:?}: expected some of {}",
            known.join(", ")
        )))
    }
}
