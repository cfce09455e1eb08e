//! `gdq setup`: GuardDuty's encrypted export path, built idempotently.
//!
//! So far only [`policy`]: the documents setup will apply (key, bucket, queue and topic
//! policies, the alert rule's pattern and message), as pure functions with their merge
//! rule. The AWS calls, `verify` and `teardown` are not written yet.

pub mod policy;
