//! Hive-style partition directory names for finding types.
//!
//! Types contain `: / . ! &` (`Backdoor:EC2/C&CActivity.B!DNS`). The directory value is the
//! type fully percent-encoded (everything but `A-Z a-z 0-9 - _ . ~`), the way DuckDB and
//! pyarrow write hive partitions themselves, so every reader decodes it back to the exact type.

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};

/// Name of the partition column; it exists only in directory names, never inside a file.
pub const PARTITION_COLUMN: &str = "type";

const UNRESERVED: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// `Backdoor:EC2/C&CActivity.B!DNS` → `Backdoor%3AEC2%2FC%26CActivity.B%21DNS`.
pub fn encode_partition_value(value: &str) -> String {
    utf8_percent_encode(value, UNRESERVED).to_string()
}

/// Inverse of [`encode_partition_value`]; `None` when the bytes are not UTF-8.
pub fn decode_partition_value(encoded: &str) -> Option<String> {
    percent_decode_str(encoded)
        .decode_utf8()
        .ok()
        .map(|s| s.into_owned())
}

/// `type=<encoded>`: the directory of one type under `findings/`.
pub fn partition_dir_name(finding_type: &str) -> String {
    format!(
        "{PARTITION_COLUMN}={}",
        encode_partition_value(finding_type)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_every_reserved_character() {
        assert_eq!(
            partition_dir_name("Backdoor:EC2/C&CActivity.B!DNS"),
            "type=Backdoor%3AEC2%2FC%26CActivity.B%21DNS"
        );
        assert_eq!(encode_partition_value("a b+c%d=e"), "a%20b%2Bc%25d%3De");
    }

    #[test]
    fn decoding_restores_the_exact_type() {
        for t in [
            "Backdoor:EC2/C&CActivity.B!DNS",
            "Trojan:EC2/DGADomainRequest.C!DNS",
            "x y+z%",
            "é:ü/ß",
        ] {
            assert_eq!(
                decode_partition_value(&encode_partition_value(t)).as_deref(),
                Some(t)
            );
        }
    }
}
