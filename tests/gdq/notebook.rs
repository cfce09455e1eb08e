//! `examples/findings.ipynb` runs headless on a warehouse built from testdata, so it cannot
//! rot: every cell must succeed (its own asserts check pandas and polars agree) and the plot
//! must render.

use std::process::Command;

use serde_json::Value;

use crate::support::*;

#[test]
fn the_example_notebook_runs_on_the_bundled_warehouse() {
    let wh = tempdir();
    assert!(ingest(wh.path(), &[&testdata("exports")]).status.success());
    let out_dir = tempdir();
    let output = Command::new(python())
        .args(["-m", "nbconvert", "--to", "notebook", "--execute"])
        .arg(repo().join("examples/findings.ipynb"))
        .arg("--output-dir")
        .arg(out_dir.path())
        .env("GDQ_WAREHOUSE", wh.path())
        .env_remove("MPLBACKEND")
        .current_dir(repo().join("examples"))
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "notebook failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let executed: Value =
        serde_json::from_slice(&std::fs::read(out_dir.path().join("findings.ipynb")).unwrap())
            .unwrap();
    let outputs: Vec<&Value> = executed["cells"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| c["outputs"].as_array())
        .flatten()
        .collect();
    assert!(outputs.iter().all(|o| o["output_type"] != "error"));
    assert!(
        outputs.iter().any(|o| o["data"]["image/png"].is_string()),
        "the severity plot renders"
    );
}
