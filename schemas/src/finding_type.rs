//! The finding type grammar:
//! `ThreatPurpose:ResourceTypeAffected/ThreatFamilyName.DetectionMechanism!Artifact`.

/// A finding type split into its documented parts. Parts that a type does not have are `None`
/// (most types have no detection mechanism or artifact).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FindingType<'a> {
    pub threat_purpose: Option<&'a str>,
    pub resource_type_affected: Option<&'a str>,
    pub threat_family: Option<&'a str>,
    pub detection_mechanism: Option<&'a str>,
    pub artifact: Option<&'a str>,
}

fn non_empty(s: &str) -> Option<&str> {
    (!s.is_empty()).then_some(s)
}

impl<'a> FindingType<'a> {
    /// Splits a type name. Never fails: a name outside the grammar yields the parts it has
    /// (a name without `:` is taken as a bare threat family).
    pub fn parse(name: &'a str) -> Self {
        let (purpose, rest) = match name.split_once(':') {
            Some((purpose, rest)) => (non_empty(purpose), rest),
            None => (None, name),
        };
        let (resource, rest) = match rest.split_once('/') {
            Some((resource, rest)) => (non_empty(resource), rest),
            None if purpose.is_some() => (non_empty(rest), ""),
            None => (None, rest),
        };
        let (family_and_mechanism, artifact) = match rest.split_once('!') {
            Some((head, artifact)) => (head, non_empty(artifact)),
            None => (rest, None),
        };
        let (family, mechanism) = match family_and_mechanism.split_once('.') {
            Some((family, mechanism)) => (non_empty(family), non_empty(mechanism)),
            None => (non_empty(family_and_mechanism), None),
        };
        FindingType {
            threat_purpose: purpose,
            resource_type_affected: resource,
            threat_family: family,
            detection_mechanism: mechanism,
            artifact,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::FindingType;

    fn parts(name: &str) -> [Option<&str>; 5] {
        let t = FindingType::parse(name);
        [
            t.threat_purpose,
            t.resource_type_affected,
            t.threat_family,
            t.detection_mechanism,
            t.artifact,
        ]
    }

    #[test]
    fn full_grammar() {
        assert_eq!(
            parts("Backdoor:EC2/C&CActivity.B!DNS"),
            [
                Some("Backdoor"),
                Some("EC2"),
                Some("C&CActivity"),
                Some("B"),
                Some("DNS")
            ]
        );
    }

    #[test]
    fn mechanism_and_artifact_are_optional() {
        assert_eq!(
            parts("Recon:EC2/PortProbeUnprotectedPort"),
            [
                Some("Recon"),
                Some("EC2"),
                Some("PortProbeUnprotectedPort"),
                None,
                None
            ]
        );
        assert_eq!(
            parts("Trojan:EC2/BlackholeTraffic!DNS"),
            [
                Some("Trojan"),
                Some("EC2"),
                Some("BlackholeTraffic"),
                None,
                Some("DNS")
            ]
        );
        assert_eq!(
            parts("CredentialAccess:RDS/AnomalousBehavior.SuccessfulLogin"),
            [
                Some("CredentialAccess"),
                Some("RDS"),
                Some("AnomalousBehavior"),
                Some("SuccessfulLogin"),
                None
            ]
        );
    }

    #[test]
    fn names_outside_the_grammar_do_not_fail() {
        assert_eq!(parts("Unusual"), [None, None, Some("Unusual"), None, None]);
        assert_eq!(
            parts("Policy:S3"),
            [Some("Policy"), Some("S3"), None, None, None]
        );
        assert_eq!(parts(""), [None, None, None, None, None]);
    }
}
