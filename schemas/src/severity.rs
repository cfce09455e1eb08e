//! GuardDuty severity bands.

/// Label of a severity value by GuardDuty's bands: Low 1.0–3.9, Medium 4.0–6.9,
/// High 7.0–8.9, Critical 9.0–10.0. Values below 1 count as Low, above 10 as Critical.
pub fn severity_label(severity: f64) -> Option<&'static str> {
    if severity.is_nan() {
        return None;
    }
    Some(if severity >= 9.0 {
        "Critical"
    } else if severity >= 7.0 {
        "High"
    } else if severity >= 4.0 {
        "Medium"
    } else {
        "Low"
    })
}

#[cfg(test)]
mod tests {
    use super::severity_label;

    #[test]
    fn band_edges_follow_guardduty() {
        let cases = [
            (1.0, "Low"),
            (3.9, "Low"),
            (4.0, "Medium"),
            (6.9, "Medium"),
            (7.0, "High"),
            (8.9, "High"),
            (9.0, "Critical"),
            (10.0, "Critical"),
        ];
        for (value, label) in cases {
            assert_eq!(severity_label(value), Some(label), "severity {value}");
        }
        assert_eq!(severity_label(f64::NAN), None);
    }
}
