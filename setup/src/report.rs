//! What setup and teardown say as they go: one line per thing found or changed, and the
//! documents they apply.

use std::io::Write;

use serde_json::Value;

/// Writes the progress lines; counts the changes so a second run can say "nothing to do".
pub struct Report<'a> {
    out: &'a mut dyn Write,
    /// Plan only: changes are described ("would …"), never made.
    pub dry_run: bool,
    /// Changes made (or, in a dry run, that would be made).
    pub changes: usize,
    /// The region the regional steps (detector, destination, forwarding) are working in,
    /// named on their lines.
    region: Option<String>,
}

impl<'a> Report<'a> {
    pub fn new(out: &'a mut dyn Write, dry_run: bool) -> Self {
        Report {
            out,
            dry_run,
            changes: 0,
            region: None,
        }
    }

    /// Names `region` on the lines that follow, until [`Report::global`].
    pub fn in_region(&mut self, region: &str) {
        self.region = Some(region.to_string());
    }

    /// The lines that follow are about the home region's shared parts.
    pub fn global(&mut self) {
        self.region = None;
    }

    fn what(&self, what: &str) -> String {
        match &self.region {
            Some(region) => format!("{region}: {what}"),
            None => what.to_string(),
        }
    }

    /// Something that is already as wanted.
    pub fn found(&mut self, step: &str, what: impl AsRef<str>) {
        let what = self.what(what.as_ref());
        let _ = writeln!(self.out, "{step:<13} ok       {what}");
    }

    /// A change: made, or in a dry run, planned.
    pub fn change(&mut self, step: &str, what: impl AsRef<str>) {
        self.changes += 1;
        let verb = if self.dry_run { "would" } else { "changed" };
        let what = self.what(what.as_ref());
        let _ = writeln!(self.out, "{step:<13} {verb:<8} {what}");
    }

    /// A remark that is neither: a skipped step, advice.
    pub fn note(&mut self, step: &str, what: impl AsRef<str>) {
        let what = self.what(what.as_ref());
        let _ = writeln!(self.out, "{step:<13} note     {what}");
    }

    /// A policy or pattern document, printed in full in a dry run (and when it changes).
    pub fn document(&mut self, title: &str, document: &Value) {
        let text = serde_json::to_string_pretty(document).unwrap_or_default();
        let _ = writeln!(self.out, "  {title}:");
        for line in text.lines() {
            let _ = writeln!(self.out, "    {line}");
        }
    }

    pub fn line(&mut self, text: impl AsRef<str>) {
        let _ = writeln!(self.out, "{}", text.as_ref());
    }
}
