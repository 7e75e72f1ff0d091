//! Host tools a test needs: in CI (`TANDEM_TEST_REQUIRE_TOOLS=1`, after
//! scripts/setup.sh) a missing one is a failure; elsewhere the test says
//! it skipped.

use std::process::Command;

/// Whether the test can run: false (after saying so) when one of `tools`
/// is not on PATH; panics instead when tools are required.
pub fn tools(test: &str, tools: &[&str]) -> bool {
    let missing: Vec<&str> = tools
        .iter()
        .copied()
        .filter(|t| {
            !Command::new("sh")
                .args(["-c", &format!("command -v {t}")])
                .output()
                .is_ok_and(|o| o.status.success())
        })
        .collect();
    if missing.is_empty() {
        return true;
    }
    assert!(
        std::env::var("TANDEM_TEST_REQUIRE_TOOLS").as_deref() != Ok("1"),
        "{test}: needs {missing:?} (TANDEM_TEST_REQUIRE_TOOLS=1; scripts/setup.sh installs them)"
    );
    eprintln!("SKIP {test}: needs {missing:?}");
    false
}
