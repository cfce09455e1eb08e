//! The dashboard page: one self-contained HTML file (the vendored ECharts, the page's
//! script and style, and the data inline), written by `gdq dashboard` and served live by
//! `gdq serve`.

use base64::Engine;
use serde_json::Value;
use sha2::{Digest, Sha256};

const PAGE: &str = include_str!("page.html");
const APP: &str = include_str!("app.js");
/// Apache ECharts 6.1.0 and zrender 6.1.0 from the npm registry, the parts the page uses
/// (scripts/vendor-echarts; Apache-2.0 and BSD-3-Clause, see assets/ECHARTS-LICENSE,
/// assets/ECHARTS-NOTICE and assets/ZRENDER-LICENSE).
const ECHARTS: &str = include_str!("assets/echarts.min.js");
const ECHARTS_NOTICE: &str = include_str!("assets/ECHARTS-NOTICE");
const ZRENDER_LICENSE: &str = include_str!("assets/ZRENDER-LICENSE");

/// JSON that cannot end the `<script>` element it sits in: every `<` is written `\u003c`
/// (findings' text may hold `</script>`), which JSON reads back as the same character.
fn script_safe_json(data: &Value) -> String {
    data.to_string().replace('<', "\\u003c")
}

fn csp_hash(script: &str) -> String {
    let digest = Sha256::digest(script.as_bytes());
    format!(
        "'sha256-{}'",
        base64::engine::general_purpose::STANDARD.encode(digest)
    )
}

/// The page over `data` (`gdq_query::dashboard::dashboard_data`); `live` adds the filters
/// and the SQL box, which ask `gdq serve` for new data.
pub fn page(data: &Value, live: bool) -> String {
    // The notices travel with the code they are for, in every page written.
    let notices = format!(
        "{}\n\nzrender:\n{}",
        ECHARTS_NOTICE.trim(),
        ZRENDER_LICENSE.trim()
    );
    let echarts = format!("/*! {} */\n{ECHARTS}", notices.replace("*/", "* /"));
    // Only the page's own two scripts may run: the policy names them by hash.
    let policy = format!("script-src {} {}", csp_hash(&echarts), csp_hash(APP));
    // The data goes in last and once: text from findings is never searched for placeholders.
    PAGE.replacen("script-src 'unsafe-inline'", &policy, 1)
        .replacen("GDQ_LIVE", if live { "1" } else { "0" }, 1)
        .replacen("GDQ_ECHARTS", &echarts, 1)
        .replacen("GDQ_APP", APP, 1)
        .replacen("GDQ_DATA", &script_safe_json(data), 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finding_text_cannot_close_the_data_script() {
        let data = serde_json::json!({"title": "</script><script>alert(1)</script><!--"});
        let json = script_safe_json(&data);
        assert!(!json.contains('<'));
        assert_eq!(serde_json::from_str::<Value>(&json).unwrap(), data);
    }
}
