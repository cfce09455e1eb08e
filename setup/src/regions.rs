//! Which regions get a detector: the home region (bucket, key, queue) and those asked for
//! with `--regions`, checked against the regions enabled for the account and against what
//! GuardDuty's export allows across regions.
//!
//! GuardDuty's rules (User Guide, "Exporting findings", Considerations): export settings are
//! per region; the bucket and the key must be in one region; findings of a commercial region
//! may go to a bucket in any commercial region but not to one in an opt-in region; findings
//! of an opt-in region may go to that region or to a commercial one. So with a commercial
//! home region every enabled region can export home, and with an opt-in home region only
//! the home region can.

use aws_sdk_ec2::types::Region as Ec2Region;

use crate::clients::Clients;
use crate::error::{SetupError, aws};

/// What `--regions` asked for.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum RegionsWanted {
    /// The home region only (no `--regions`).
    #[default]
    Home,
    /// These, plus the home region.
    List(Vec<String>),
    /// Every region enabled for the account.
    All,
}

impl RegionsWanted {
    /// `all`, or regions separated by commas.
    pub fn parse(text: &str) -> Result<RegionsWanted, SetupError> {
        let text = text.trim();
        if text.eq_ignore_ascii_case("all") {
            return Ok(RegionsWanted::All);
        }
        let list: Vec<String> = text
            .split(',')
            .map(|r| r.trim().to_ascii_lowercase())
            .filter(|r| !r.is_empty())
            .collect();
        if list.is_empty() {
            return Err(SetupError::Usage(
                "--regions needs region names separated by commas, or all".into(),
            ));
        }
        Ok(RegionsWanted::List(list))
    }
}

/// A region as EC2's DescribeRegions reports it for the account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KnownRegion {
    pub name: String,
    /// `opt-in-not-required`, `opted-in` or `not-opted-in`.
    pub opt_in_status: String,
}

impl KnownRegion {
    fn enabled(&self) -> bool {
        self.opt_in_status != "not-opted-in"
    }

    fn opt_in(&self) -> bool {
        self.opt_in_status != "opt-in-not-required"
    }
}

/// The partition a region name belongs to.
pub fn partition_of(region: &str) -> &'static str {
    if region.starts_with("cn-") {
        "aws-cn"
    } else if region.starts_with("us-gov-") {
        "aws-us-gov"
    } else if region.starts_with("us-isob-") {
        "aws-iso-b"
    } else if region.starts_with("us-iso-") {
        "aws-iso"
    } else if region.starts_with("eu-isoe-") {
        "aws-iso-e"
    } else {
        "aws"
    }
}

/// The detector regions, home first, each once; or the one line saying why not.
pub fn plan(
    home: &str,
    partition: &str,
    known: &[KnownRegion],
    wanted: &RegionsWanted,
) -> Result<Vec<String>, SetupError> {
    // A listing from a wider view than the caller's (every partition) is narrowed to it.
    let known: Vec<&KnownRegion> = known
        .iter()
        .filter(|r| partition_of(&r.name) == partition)
        .collect();
    let find = |name: &str| known.iter().find(|r| r.name == name).copied();
    let asked: Vec<String> = match wanted {
        RegionsWanted::Home => return Ok(vec![home.to_string()]),
        RegionsWanted::All => known
            .iter()
            .filter(|r| r.enabled())
            .map(|r| r.name.clone())
            .collect(),
        RegionsWanted::List(list) => list.clone(),
    };
    for name in &asked {
        match find(name) {
            None => {
                return Err(SetupError::Usage(format!(
                    "--regions: {name:?} is not a region of partition {partition} (EC2 \
                     DescribeRegions lists {})",
                    known
                        .iter()
                        .map(|r| r.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )));
            }
            Some(r) if !r.enabled() => {
                return Err(SetupError::Usage(format!(
                    "--regions: {name} is an opt-in region not enabled for this account \
                     (enable it under Account → AWS Regions, then run setup again)"
                )));
            }
            Some(_) => {}
        }
    }
    let mut regions = vec![home.to_string()];
    for name in asked {
        if !regions.contains(&name) {
            regions.push(name);
        }
    }
    if regions.len() > 1 && find(home).is_some_and(KnownRegion::opt_in) {
        return Err(SetupError::Usage(format!(
            "--region {home} is an opt-in region: GuardDuty exports another region's findings \
             only to a bucket in a commercial region, so with --regions the bucket and key need \
             a home --region that is not opt-in"
        )));
    }
    Ok(regions)
}

/// Every region EC2 knows for the account, with its opt-in status.
pub async fn known(c: &Clients) -> Result<Vec<KnownRegion>, SetupError> {
    let described = c
        .ec2
        .describe_regions()
        .all_regions(true)
        .send()
        .await
        .map_err(aws("ec2:DescribeRegions"))?;
    Ok(described
        .regions()
        .iter()
        .filter_map(|r: &Ec2Region| {
            Some(KnownRegion {
                name: r.region_name()?.to_string(),
                opt_in_status: r
                    .opt_in_status()
                    .unwrap_or("opt-in-not-required")
                    .to_string(),
            })
        })
        .collect())
}

/// The detector regions for `wanted`, home first; asks EC2 only when `--regions` was given.
pub async fn resolve(
    c: &Clients,
    partition: &str,
    wanted: &RegionsWanted,
) -> Result<Vec<String>, SetupError> {
    if *wanted == RegionsWanted::Home {
        return Ok(vec![c.region.clone()]);
    }
    plan(&c.region, partition, &known(c).await?, wanted)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn known() -> Vec<KnownRegion> {
        [
            ("eu-west-1", "opt-in-not-required"),
            ("us-east-1", "opt-in-not-required"),
            ("af-south-1", "opted-in"),
            ("me-south-1", "not-opted-in"),
            ("cn-north-1", "opt-in-not-required"),
        ]
        .into_iter()
        .map(|(name, status)| KnownRegion {
            name: name.into(),
            opt_in_status: status.into(),
        })
        .collect()
    }

    fn list(names: &[&str]) -> RegionsWanted {
        RegionsWanted::List(names.iter().map(|n| n.to_string()).collect())
    }

    #[test]
    fn home_comes_first_and_each_region_once() {
        let got = plan(
            "eu-west-1",
            "aws",
            &known(),
            &list(&["us-east-1", "eu-west-1", "us-east-1"]),
        )
        .unwrap();
        assert_eq!(got, ["eu-west-1", "us-east-1"]);
        assert_eq!(
            plan("eu-west-1", "aws", &known(), &RegionsWanted::Home).unwrap(),
            ["eu-west-1"]
        );
    }

    #[test]
    fn all_is_every_enabled_region_of_the_partition() {
        let got = plan("eu-west-1", "aws", &known(), &RegionsWanted::All).unwrap();
        assert_eq!(got, ["eu-west-1", "us-east-1", "af-south-1"]);
    }

    #[test]
    fn unknown_disabled_and_cross_partition_regions_are_refused() {
        let refused = |wanted: RegionsWanted, home: &str| match plan(home, "aws", &known(), &wanted)
        {
            Err(SetupError::Usage(line)) => line,
            other => panic!("expected a usage error, got {other:?}"),
        };
        assert!(refused(list(&["eu-wst-1"]), "eu-west-1").contains("\"eu-wst-1\" is not a region"));
        assert!(refused(list(&["me-south-1"]), "eu-west-1").contains("not enabled"));
        assert!(
            refused(list(&["cn-north-1"]), "eu-west-1").contains("not a region of partition aws")
        );
        // An opt-in home region takes no other region's findings.
        assert!(refused(list(&["eu-west-1"]), "af-south-1").contains("opt-in region"));
        // An opt-in region exports to a commercial home.
        assert!(plan("eu-west-1", "aws", &known(), &list(&["af-south-1"])).is_ok());
    }

    #[test]
    fn regions_parse_from_a_list_or_all() {
        assert_eq!(RegionsWanted::parse("ALL").unwrap(), RegionsWanted::All);
        assert_eq!(
            RegionsWanted::parse(" eu-west-1, us-east-1 ,").unwrap(),
            list(&["eu-west-1", "us-east-1"])
        );
        assert!(RegionsWanted::parse(" , ").is_err());
    }
}
