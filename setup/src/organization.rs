//! `--organization --admin-account ID`: GuardDuty for a whole AWS Organization.
//!
//! Run from the management account, setup makes ID GuardDuty's delegated administrator in
//! every listed region (`guardduty:EnableOrganizationAdminAccount`, which also turns on
//! GuardDuty's trusted access in Organizations) and stops there: the export path belongs to
//! the administrator. Run from ID, it builds the export path as usual and turns on
//! auto-enable for every member account, existing and new, with the same features, in every
//! listed region (`guardduty:UpdateOrganizationConfiguration`). The administrator's
//! publishing destination then exports the members' findings under
//! `AWSLogs/<member account>/GuardDuty/<region>/`. Member accounts are asked for nothing.

use aws_sdk_guardduty::types::{
    AdminStatus, AutoEnableMembers, DetectorFeature, OrgFeature, OrgFeatureStatus,
    OrganizationFeatureConfiguration,
};

use crate::clients::Clients;
use crate::error::{SetupError, aws, code};
use crate::policy::DetectorRef;
use crate::record::OrganizationRecord;
use crate::report::Report;

const STEP: &str = "organization";

/// What the caller is to the organization.
#[derive(Debug, Clone, PartialEq)]
pub enum Role {
    /// The management account: it delegates GuardDuty's administration.
    Management(OrganizationRecord),
    /// The delegated administrator: it builds the export path and enables the members.
    Administrator(OrganizationRecord),
}

/// Checks `--admin-account` and the caller's place in the organization; fails with one
/// usage line when there is no organization or the caller is neither account.
pub async fn role(c: &Clients, account: &str, admin: &str) -> Result<Role, SetupError> {
    if admin.len() != 12 || !admin.bytes().all(|b| b.is_ascii_digit()) {
        return Err(SetupError::Usage(format!(
            "--admin-account {admin:?} is not an AWS account id (12 digits)"
        )));
    }
    let described = match c.organizations.describe_organization().send().await {
        Ok(d) => d,
        Err(e) if code(&e) == "AWSOrganizationsNotInUseException" => {
            return Err(SetupError::Usage(format!(
                "--organization: account {account} is not in an AWS Organization \
                 (organizations:DescribeOrganization says so); drop --organization, or run \
                 from an account of the organization"
            )));
        }
        Err(e) => return Err(aws("organizations:DescribeOrganization")(e)),
    };
    let org = described.organization();
    let record = OrganizationRecord {
        organization_id: org.and_then(|o| o.id()).unwrap_or_default().to_string(),
        management_account: org
            .and_then(|o| o.master_account_id())
            .unwrap_or_default()
            .to_string(),
        admin_account: admin.to_string(),
    };
    if account == admin {
        Ok(Role::Administrator(record))
    } else if account == record.management_account {
        Ok(Role::Management(record))
    } else {
        Err(SetupError::Usage(format!(
            "--organization: account {account} is neither the organization's management \
             account ({}) nor the administrator --admin-account {admin}; run from one of them",
            record.management_account
        )))
    }
}

/// From the management account: `admin` becomes GuardDuty's delegated administrator in
/// each region.
pub async fn delegate(
    c: &Clients,
    r: &mut Report<'_>,
    regions: &[String],
    admin: &str,
) -> Result<(), SetupError> {
    for region in regions {
        r.in_region(region);
        let gd = c.guardduty_in(region);
        let listed = gd
            .list_organization_admin_accounts()
            .send()
            .await
            .map_err(aws("guardduty:ListOrganizationAdminAccounts"))?;
        let current = listed
            .admin_accounts()
            .iter()
            .find(|a| a.admin_status() == Some(&AdminStatus::Enabled))
            .and_then(|a| a.admin_account_id())
            .map(str::to_string);
        match current {
            Some(id) if id == admin => {
                r.found(
                    STEP,
                    format!("{admin} is GuardDuty's delegated administrator"),
                );
            }
            Some(other) => {
                r.global();
                return Err(SetupError::Conflict(format!(
                    "{region}: GuardDuty's delegated administrator is {other}, not {admin}; \
                     GuardDuty allows one per organization (disable it with \
                     guardduty:DisableOrganizationAdminAccount first, or pass \
                     --admin-account {other})"
                )));
            }
            None => {
                if !r.dry_run {
                    gd.enable_organization_admin_account()
                        .admin_account_id(admin)
                        .send()
                        .await
                        .map_err(aws("guardduty:EnableOrganizationAdminAccount"))?;
                }
                r.change(
                    STEP,
                    format!("make {admin} GuardDuty's delegated administrator"),
                );
            }
        }
    }
    r.global();
    Ok(())
}

/// The organization feature of the same name as a detector feature, if GuardDuty has one.
fn organization_feature(f: &DetectorFeature) -> OrgFeature {
    OrgFeature::from(f.as_str())
}

/// From the administrator: auto-enable for every member, with `features`, in each detector's
/// region. `exists` says whether the detectors exist (not in a dry run that plans them).
pub async fn enable_members(
    c: &Clients,
    r: &mut Report<'_>,
    detectors: &[(DetectorRef, bool)],
    features: &[DetectorFeature],
) -> Result<(), SetupError> {
    let feature_names: Vec<&str> = features.iter().map(|f| f.as_str()).collect();
    let what = if feature_names.is_empty() {
        "auto-enable GuardDuty for every member account, existing and new".to_string()
    } else {
        format!(
            "auto-enable GuardDuty for every member account, existing and new, with {}",
            feature_names.join(" ")
        )
    };
    for (detector, exists) in detectors {
        r.in_region(&detector.region);
        let gd = c.guardduty_in(&detector.region);
        let holds = *exists && {
            let current = gd
                .describe_organization_configuration()
                .detector_id(&detector.id)
                .send()
                .await
                .map_err(aws("guardduty:DescribeOrganizationConfiguration"))?;
            current.auto_enable_organization_members() == Some(&AutoEnableMembers::All)
                && features.iter().all(|f| {
                    current.features().iter().any(|have| {
                        have.name() == Some(&organization_feature(f))
                            && have.auto_enable() == Some(&OrgFeatureStatus::All)
                    })
                })
        };
        if holds {
            r.found(STEP, what.replace("auto-enable", "auto-enabled"));
            continue;
        }
        if !r.dry_run {
            let configurations: Vec<OrganizationFeatureConfiguration> = features
                .iter()
                .map(|f| {
                    OrganizationFeatureConfiguration::builder()
                        .name(organization_feature(f))
                        .auto_enable(OrgFeatureStatus::All)
                        .build()
                })
                .collect();
            gd.update_organization_configuration()
                .detector_id(&detector.id)
                .auto_enable_organization_members(AutoEnableMembers::All)
                .set_features((!configurations.is_empty()).then_some(configurations))
                .send()
                .await
                .map_err(aws("guardduty:UpdateOrganizationConfiguration"))?;
        }
        r.change(STEP, what.clone());
    }
    r.global();
    Ok(())
}

/// Whether auto-enable for every member holds on `detector` (for verify).
pub async fn members_enabled(
    c: &Clients,
    detector: &DetectorRef,
) -> Result<Option<String>, SetupError> {
    let current = c
        .guardduty_in(&detector.region)
        .describe_organization_configuration()
        .detector_id(&detector.id)
        .send()
        .await
        .map_err(aws("guardduty:DescribeOrganizationConfiguration"))?;
    Ok(current
        .auto_enable_organization_members()
        .map(|a| a.as_str().to_string()))
}
