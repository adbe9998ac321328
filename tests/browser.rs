//! A real browser: headless Debian `chromium` driven by npm `playwright-core`
//! (`idp/browser-login.mjs`) signs in on the IdP's pages, reaches the app through gatehouse,
//! opens the user page, signs out, and is sent to the login again. Screenshots are kept in
//! `target/tmp/browser-screenshots/` as test artifacts.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use support::{
    free_addr,
    idp::{repo_path, ClientSpec, Idp},
    Gatehouse, Upstream,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_signs_in_uses_the_app_and_signs_out() {
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(
        std::path::Path::new(&chromium).exists(),
        "{chromium} is missing: install Debian's chromium (make deps)"
    );
    let addr = free_addr();
    let origin = format!("http://{addr}");
    let idp = Idp::start(
        &ClientSpec {
            client_id: "gatehouse-browser",
            client_secret: "browser-secret",
            origins: std::slice::from_ref(&origin),
        },
        &[],
    );
    let upstream = Upstream::start("app").await;
    let config = format!(
        "insecure_server: true
idp_provider_url: {issuer}
idp_client_id: gatehouse-browser
idp_client_secret: browser-secret
pass_identity_headers: true
jwt_claims_headers: [email]
routes:
  - from: {origin}
    to: {up}
    allow_any_authenticated_user: true
",
        issuer = idp.issuer,
        up = upstream.url(),
    );
    let gh = Gatehouse::start_at(addr, &config).await;
    let screenshots = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("browser-screenshots");
    std::fs::create_dir_all(&screenshots).unwrap();
    let output = tokio::process::Command::new("node")
        .arg(repo_path("idp/browser-login.mjs"))
        .args(["--url", &format!("{origin}/app")])
        .args(["--user", "alice", "--password", "alice"])
        .args(["--expect-text", "alice@example.com"])
        .args(["--expect-user-page-text", "alice@example.com"])
        .arg("--screenshots")
        .arg(&screenshots)
        .args(["--chromium", &chromium])
        .kill_on_drop(true)
        .output()
        .await
        .expect("run node");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "browser run failed ({}):\n{stdout}\n{stderr}\n--- gatehouse ---\n{}",
        output.status,
        gh.log()
    );
    eprintln!("browser: {stdout}screenshots in {}", screenshots.display());
    let pngs = std::fs::read_dir(&screenshots)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .is_ok_and(|e| e.path().extension().is_some_and(|x| x == "png"))
        })
        .count();
    assert!(pngs >= 3, "expected screenshots, found {pngs}");
}
