//! Host tools a test needs: in CI (`TANDEM_TEST_REQUIRE_TOOLS=1`, after
//! scripts/setup.sh) a missing one is a failure; elsewhere the test says
//! it skipped.

use std::process::Command;

/// Whether `tool` is on PATH.
pub fn have(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

pub fn required() -> bool {
    std::env::var("TANDEM_TEST_REQUIRE_TOOLS").as_deref() == Ok("1")
}

/// Fails `test` when tools are required, else says it skipped for lack
/// of `what` (the caller then returns).
pub fn skip(test: &str, what: &str) {
    assert!(
        !required(),
        "{test}: needs {what} (TANDEM_TEST_REQUIRE_TOOLS=1; scripts/setup.sh installs it)"
    );
    eprintln!("SKIP {test}: needs {what}");
}
