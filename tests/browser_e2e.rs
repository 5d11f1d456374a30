//! The web console in real headless Chromium (Debian's `chromium` driven by
//! `chromedriver`), against a real `cpam-server run`.

use std::time::Duration;

use cpam_tests::browser::{Browser, BrowserOptions};

/// The harness itself: a page loads, a script runs on click, a screenshot
/// is a PNG in the artifacts directory.
#[test]
fn browser_drives_a_page_and_saves_screenshots() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    std::fs::write(
        dir.path().join("page.html"),
        "<!doctype html><title>probe</title><h1 data-test=\"h\">before</h1>\
         <button data-test=\"b\">go</button><script src=\"page.js\"></script>",
    )?;
    std::fs::write(
        dir.path().join("page.js"),
        "document.querySelector('[data-test=b]').addEventListener('click', () => {\
         document.querySelector('[data-test=h]').textContent = 'after'; });",
    )?;
    let mut b = Browser::start(BrowserOptions {
        shot_prefix: "harness".into(),
        ..Default::default()
    })?;
    b.goto(&format!("file://{}/page.html", dir.path().display()))?;
    assert_eq!(b.text("[data-test=h]")?, "before");
    b.click("[data-test=b]")?;
    b.wait_text("[data-test=h]", "after", Duration::from_secs(5))?;
    let shot = b.screenshot("probe")?;
    assert!(std::fs::metadata(&shot)?.len() > 100, "{}", shot.display());
    Ok(())
}
