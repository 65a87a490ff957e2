//! The web console, end to end: a real sshjit-server with the request
//! tests' roles, people who also use the real `sshjit` CLI, and a real
//! headless Chromium (Debian's `chromium` and `chromium-driver`) driven
//! through WebDriver. Each test saves screenshots of the pages it sees in
//! `target/console-screenshots/` (the README's come from there).

use std::process::Command;

use serde_json::Value;

use crate::requests::{
    assert_in, assert_out, listed, person, request, run_printed, shown, sshd_and_server, start,
};
use crate::support::browser::Browser;
use crate::support::server::{Person, Server, Store};
use crate::support::sshd::{ClientKey, USER_A};
use crate::support::*;

/// Logs `p` in through the console's form, as a person types it.
#[track_caller]
fn console_login(b: &Browser, server: &Server, p: &Person) {
    b.goto(&format!("{}/console/login", server.url));
    b.fill("#user", &p.name);
    let password = std::fs::read_to_string(&p.password_file).unwrap();
    b.fill("#password", password.trim_end());
    b.fill("#totp", &p.code());
    b.click("button[type=submit]");
    b.wait_until("the requests page", false, |b| {
        b.url().ends_with("/console/requests")
    });
}

#[track_caller]
fn log_out(b: &Browser) {
    b.click(".logout button");
    b.wait_until("the login page", false, |b| {
        b.url().ends_with("/console/login")
    });
}

/// The text of a label's `for` field, by the label's exact text.
fn label_for(b: &Browser, text: &str) -> Value {
    b.script(&format!(
        "var l = Array.from(document.querySelectorAll('label')).find(function (l) {{ return l.textContent === {text:?}; }}); \
         return l ? document.getElementById(l.htmlFor) && l.htmlFor : null;"
    ))
}

/// The session cookie's value, as the browser holds it.
fn session_cookie(b: &Browser) -> String {
    b.cookie("sshjit_console")["value"]
        .as_str()
        .expect("a session cookie")
        .to_owned()
}

/// `curl` against the server with the browser's session cookie:
/// (status, headers, body).
fn curl(cookie: &str, args: &[&str]) -> (u16, String, String) {
    let out = Command::new("curl")
        .args(["-s", "-D", "-", "--max-time", "60"])
        .args(["-H", &format!("Cookie: sshjit_console={cookie}")])
        .args(args)
        .output()
        .expect("curl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, head.to_ascii_lowercase(), body.to_owned())
}

#[test]
fn a_person_logs_in_with_password_and_totp_and_approves_in_the_page_but_never_their_own() {
    let dir = TestDir::new("console-approve");
    let server = start("console-approve", Store::Sqlite, &dir, "");
    // Alice may ask (dev) and approve (sre): never her own request.
    let (alice_p, alice) = person(&server, "alice", &["dev", "sre"]);
    let (bob_p, bob) = person(&server, "bob", &["sre"]);
    let key = alice.home.write("k.pub", format!("{KEY_A}\n"));
    let (id, _) = request(
        &alice,
        &[
            "--role",
            "one",
            "--as",
            USER_A,
            "--host",
            "web-1",
            "--for",
            "45m",
            "--reason",
            "INC-7 restart the queue",
            "--key",
            key.to_str().unwrap(),
        ],
    );
    assert_eq!(shown(&bob, &id)["state"], "pending");

    let b = Browser::start("console-approve");
    b.goto(&format!("{}/console/requests", server.url));
    b.wait_until("the login page", false, |b| {
        b.url().ends_with("/console/login")
    });
    // Every field labelled, as the issue names them.
    for (text, field) in [
        ("User", "user"),
        ("Password", "password"),
        ("TOTP code", "totp"),
    ] {
        assert_eq!(label_for(&b, text), field, "a label {text:?}");
    }
    b.screenshot("login");

    // A wrong code fails like the CLI's login, saying only that it failed.
    b.fill("#user", "bob");
    b.fill(
        "#password",
        std::fs::read_to_string(&bob_p.password_file)
            .unwrap()
            .trim_end(),
    );
    b.fill("#totp", "000000");
    b.click("button[type=submit]");
    b.wait_until("the refusal", false, |b| {
        b.text("#error").contains("login failed")
    });
    assert!(b.url().ends_with("/console/login"), "{}", b.url());
    assert!(
        server.log().contains("person=bob") && server.log().contains("why=\"bad code\""),
        "the log says why: {}",
        server.log()
    );

    // The right code: in, and the pending request shows who, what, why.
    console_login(&b, &server, &bob_p);
    let card = format!("#req-{id}");
    b.find(&card);
    let text = b.text(&card);
    for want in [
        "alice",
        "one",
        USER_A,
        "web-1",
        "45m",
        "INC-7 restart the queue",
        "0 of 1",
    ] {
        assert!(text.contains(want), "{want:?} in {text}");
    }
    b.screenshot("requests");
    b.resize(390, 844);
    b.screenshot("requests-phone");
    let overflow = b.script("return document.documentElement.scrollWidth <= window.innerWidth;");
    assert_eq!(overflow, true, "no sideways scrolling on a phone");
    b.resize(1280, 900);
    log_out(&b);
    // The session ended with the page: the cookie no longer opens it.
    b.goto(&format!("{}/console/requests", server.url));
    b.wait_until("the login page", false, |b| {
        b.url().ends_with("/console/login")
    });

    // Alice cannot approve her own request: the rule's refusal is shown
    // and nothing changes.
    console_login(&b, &server, &alice_p);
    b.click(&format!("{card} form[action$='/approve'] button"));
    b.wait_until("the refusal", false, |b| !b.text("#error").is_empty());
    let refusal = b.text("#error");
    assert!(
        refusal.contains("never approved by its requester"),
        "{refusal}"
    );
    b.screenshot("self-approval-refused");
    assert_eq!(shown(&alice, &id)["state"], "pending");
    assert!(
        shown(&alice, &id)["approvals"]
            .as_array()
            .unwrap()
            .is_empty()
    );
    log_out(&b);

    // Bob approves in the page; the CLI shows it approved.
    console_login(&b, &server, &bob_p);
    b.fill(&format!("#approve-{id}"), "checked with alice");
    b.click(&format!("{card} form[action$='/approve'] button"));
    b.wait_until("the request to leave the pending list", true, |b| {
        b.try_find(&card).is_none()
    });
    let v = shown(&alice, &id);
    assert_eq!(v["state"], "approved", "{v}");
    assert_eq!(v["approvals"][0]["by"], "bob", "{v}");
    assert_eq!(v["approvals"][0]["reason"], "checked with alice", "{v}");
    let all = listed(&bob);
    assert!(
        all.iter()
            .any(|r| r["id"] == id && r["state"] == "approved")
    );
}

#[test]
fn a_pending_request_appears_without_reloading_and_its_hostile_reason_is_inert() {
    let dir = TestDir::new("console-hostile");
    let server = start("console-hostile", Store::Sqlite, &dir, "");
    let (_, alice) = person(&server, "alice", &["dev"]);
    let bob_p = server.person("bob", &["sre"]);
    let b = Browser::start("console-hostile");
    console_login(&b, &server, &bob_p);
    assert!(b.text("main").contains("No request is waiting"));
    let title = b.title();

    // Asked while the page is open: its script sees the trail move on and
    // reloads the page by itself.
    let hostile = "<script>document.title='pwned';window.pwned=1</script><img src=x onerror=\"window.pwned=2\"> <b>bold</b>";
    let key = alice.home.write("k.pub", format!("{KEY_A}\n"));
    let (id, _) = request(
        &alice,
        &[
            "--role",
            "one",
            "--as",
            USER_A,
            "--for",
            "30m",
            "--reason",
            hostile,
            "--key",
            key.to_str().unwrap(),
        ],
    );
    b.wait_until("the new request, without a reload", false, |b| {
        b.try_find(&format!("#req-{id}")).is_some()
    });
    let reason = b.text(&format!("#req-{id} .reason"));
    assert_eq!(reason, hostile, "shown as text, literally");
    assert_eq!(b.title(), title, "no script of the reason ran");
    assert_eq!(b.script("return typeof window.pwned;"), "undefined");
    assert_eq!(
        b.script("return document.querySelectorAll('main img, main b, main script').length;"),
        0,
        "no element made from the reason"
    );
    assert!(b.source().contains("&lt;script&gt;document.title="));
    b.screenshot("hostile-reason");
}

#[test]
fn revoking_a_grant_in_the_page_refuses_the_next_ssh_login() {
    let dir = TestDir::new("console-revoke");
    let (sshd, server) = sshd_and_server("console-revoke", &dir, "");
    let (_, alice) = person(&server, "alice", &["dev"]);
    let root_p = server.person("root", &["admin"]);
    let key = ClientKey::generate(&alice.home.path, "id_alice");
    let public = format!("{}.pub", key.private.display());
    let (id, r) = request(
        &alice,
        &[
            "--role",
            "auto",
            "--as",
            USER_A,
            "--host",
            sshd.host,
            "--for",
            "30m",
            "--reason",
            "INC-12 deploy",
            "--key",
            &public,
        ],
    );
    let ssh = r.stdout.lines().last().unwrap().to_owned();
    assert_in(&sshd, &run_printed(&sshd, &ssh, &alice.home.path));

    let b = Browser::start("console-revoke");
    console_login(&b, &server, &root_p);
    b.click("nav a[href='/console/grants']");
    let card = format!("#grant-{id}");
    b.find(&card);
    let text = b.text(&card);
    for want in [USER_A, "INC-12 deploy", "key ID", "Time left", sshd.host] {
        assert!(text.contains(want), "{want:?} in {text}");
    }
    b.screenshot("grants");

    // A revocation needs its reason, as the CLI's does: the browser will
    // not send the form without one, and neither would the server take it.
    b.fill(&format!("#revoke-{id}"), "laptop lost");
    b.click(&format!("{card} button"));
    b.wait_until("the grant to leave the list", true, |b| {
        b.try_find(&card).is_none()
    });
    assert_out(&sshd, &run_printed(&sshd, &ssh, &alice.home.path));
    assert_eq!(shown(&alice, &id)["state"], "revoked");
    // Recorded in the trail by the person who did it, with the reason.
    let root = crate::support::server::Client::new("root", &server);
    root.login(&root_p);
    let r = root.run(&["report", "--format", "json"]);
    r.assert_ok();
    let report: Value = serde_json::from_str(&r.stdout).unwrap();
    let entry = report["grants"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["grant"]["id"] == id)
        .expect("the grant in the report");
    assert_eq!(entry["revocations"][0]["by"], "root", "{entry}");
    assert_eq!(entry["revocations"][0]["reason"], "laptop lost", "{entry}");

    // Freeze and thaw, with their reasons; the banner says so meanwhile.
    b.fill("#freeze-reason", "incident 42");
    b.click("form[action='/console/freeze'] button");
    b.wait_until("the frozen banner", true, |b| {
        b.text(".frozen").contains("frozen")
    });
    b.screenshot("frozen");
    let r = root.run(&["list", "--json"]);
    r.assert_ok();
    assert!(
        r.stdout.contains("\"frozen\": true") || r.stdout.contains("\"frozen\":true"),
        "{}",
        r.stdout
    );
    b.fill("#thaw-reason", "incident 42 over");
    b.click("form[action='/console/thaw'] button");
    b.wait_until("the banner to go", true, |b| {
        b.try_find(".frozen").is_none()
    });
}

#[test]
fn a_post_without_its_csrf_token_is_refused_and_the_session_cookie_is_strict() {
    let server = Server::start("console-csrf");
    let root_p = server.person("root", &["admin"]);
    let eve_p = server.person("eve", &[]);
    let b = Browser::start("console-csrf");
    console_login(&b, &server, &root_p);

    let c = b.cookie("sshjit_console");
    assert_eq!(c["httpOnly"], true, "{c}");
    assert_eq!(c["sameSite"], "Strict", "{c}");
    assert_eq!(c["path"], "/console", "{c}");
    // Plain http on loopback: not Secure (the browser would drop it).
    assert_eq!(c["secure"], false, "{c}");
    assert_eq!(
        b.script("return document.cookie.indexOf('sshjit_console') < 0;"),
        true,
        "scripts cannot read the session"
    );
    let cookie = session_cookie(&b);

    // Every answer carries the strict headers.
    let (status, head, _) = curl(&cookie, &[&format!("{}/console/grants", server.url)]);
    assert_eq!(status, 200, "{head}");
    for want in [
        "content-security-policy: default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        "x-content-type-options: nosniff",
        "referrer-policy: no-referrer",
    ] {
        assert!(head.contains(want), "{want} in {head}");
    }

    // A freeze without the form's token, or with another's, is refused
    // before anything is done.
    let freeze = format!("{}/console/freeze", server.url);
    let (status, _, body) = curl(&cookie, &["--data", "reason=forged", &freeze]);
    assert_eq!(status, 403, "{body}");
    let (status, _, body) = curl(
        &cookie,
        &[
            "--data",
            &format!("reason=forged&csrf={}", "0".repeat(64)),
            &freeze,
        ],
    );
    assert_eq!(status, 403, "{body}");
    // The login form too: a token without its cookie is refused.
    let (status, _, _) = curl(
        "",
        &[
            "--data",
            "user=root&password=x&totp=1&csrf=00",
            &format!("{}/console/login", server.url),
        ],
    );
    assert_eq!(status, 403);
    // With the page's token, fields are still checked on the server: an
    // empty reason and an oversized one are refused, saying why.
    b.goto(&format!("{}/console/grants", server.url));
    let token = b.script("return document.querySelector('input[name=csrf]').value;");
    let token = token.as_str().expect("a token in the page");
    let (status, _, body) = curl(
        &cookie,
        &["--data", &format!("reason=+++&csrf={token}"), &freeze],
    );
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("must not be empty"), "{body}");
    let (status, _, body) = curl(
        &cookie,
        &[
            "--data",
            &format!("reason={}&csrf={token}", "x".repeat(2000)),
            &freeze,
        ],
    );
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("too long"), "{body}");
    b.goto(&format!("{}/console/grants", server.url));
    assert!(b.try_find(".frozen").is_none(), "nothing was frozen");
    assert!(b.try_find("#freeze-reason").is_some());
    assert!(
        !server.log().contains("change=freeze"),
        "nothing recorded: {}",
        server.log()
    );
    // The page's own form, token included, does it.
    b.fill("#freeze-reason", "the real one");
    b.click("form[action='/console/freeze'] button");
    b.wait_until("the frozen banner", true, |b| {
        b.text(".frozen").contains("frozen")
    });
    b.wait_until("the change in the log", false, |_| {
        server.log().contains("change=freeze")
    });
    // The secret never reaches the log.
    assert!(!server.log().contains(&cookie));

    // A person outside group admin is refused the admin pages and forms.
    log_out(&b);
    console_login(&b, &server, &eve_p);
    assert!(b.try_find("nav a[href='/console/grants']").is_none());
    b.goto(&format!("{}/console/grants", server.url));
    assert!(
        b.text("#error").contains("not in group admin"),
        "{}",
        b.text("body")
    );
}

#[test]
fn the_report_filters_downloads_and_charts_access() {
    let dir = TestDir::new("console-report");
    let server = start("console-report", Store::Sqlite, &dir, "");
    let (_, alice) = person(&server, "alice", &["dev"]);
    let (_, dave) = person(&server, "dave", &["dev"]);
    let (_, carol) = person(&server, "carol", &["sre"]);
    let root_p = server.person("root", &["admin"]);
    let ka = alice.home.write("k.pub", format!("{KEY_A}\n"));
    let kd = dave.home.write("k.pub", format!("{KEY_B}\n"));
    let kc = carol.home.write("k.pub", format!("{KEY_B}\n"));
    let (a_id, _) = request(
        &alice,
        &[
            "--role",
            "auto",
            "--as",
            USER_A,
            "--host",
            "web-1",
            "--for",
            "30m",
            "--reason",
            "INC-1 alice",
            "--key",
            ka.to_str().unwrap(),
        ],
    );
    let (d_id, _) = request(
        &dave,
        &[
            "--role",
            "deploy",
            "--as",
            USER_A,
            "--host",
            "db-1",
            "--for",
            "20m",
            "--reason",
            "INC-2 dave",
            "--key",
            kd.to_str().unwrap(),
        ],
    );
    let (bg_id, _) = request(
        &carol,
        &[
            "--role",
            "emergency",
            "--as",
            USER_A,
            "--for",
            "1h",
            "--reason",
            "INC-3 outage",
            "--key",
            kc.to_str().unwrap(),
        ],
    );

    let b = Browser::start("console-report");
    console_login(&b, &server, &root_p);
    b.click("nav a[href='/console/report']");
    b.find("table");
    let table = b.text("table");
    for id in [&a_id, &d_id, &bg_id] {
        assert!(table.contains(id.as_str()), "{id} in {table}");
    }
    // The chart is the server's SVG, drawn (no script), in the page.
    b.wait_until("the chart to load", false, |b| {
        b.script(
            "var i = document.getElementById('chart'); return i.complete && i.naturalWidth > 0;",
        ) == true
    });
    b.screenshot("report");

    // Filters: by person.
    b.fill("#f-person", "alice");
    b.click(".filters button");
    b.wait_until("the filtered table", false, |b| {
        b.url().contains("person=alice")
    });
    let table = b.text("table");
    assert!(table.contains(&a_id), "{table}");
    assert!(!table.contains(&d_id) && !table.contains(&bg_id), "{table}");
    assert!(
        b.text("#count").starts_with("1 grant"),
        "{}",
        b.text("#count")
    );
    // By account and period: nobody's grants are for root, none are
    // from before 2000.
    b.goto(&format!("{}/console/report?account=root", server.url));
    assert!(
        b.text("#count").starts_with("0 grant"),
        "{}",
        b.text("#count")
    );
    b.goto(&format!("{}/console/report?until=2000-01-01", server.url));
    assert!(
        b.text("#count").starts_with("0 grant"),
        "{}",
        b.text("#count")
    );
    b.goto(&format!(
        "{}/console/report?since=1d&account={USER_A}",
        server.url
    ));
    assert!(
        b.text("#count").starts_with("3 grant"),
        "{}",
        b.text("#count")
    );
    // By host: web-1 is alice's and, break-glass for every host, carol's.
    b.goto(&format!("{}/console/report?host=web-1", server.url));
    let table = b.text("table");
    assert!(table.contains(&a_id) && table.contains(&bg_id), "{table}");
    assert!(!table.contains(&d_id), "{table}");
    // A period that does not parse is refused, saying why.
    b.goto(&format!("{}/console/report?since=yesterday", server.url));
    assert!(b.text("#error").contains("since"), "{}", b.text("body"));

    // The downloads, with the filters of the page.
    let cookie = session_cookie(&b);
    let (status, head, csv) = curl(
        &cookie,
        &[&format!("{}/console/report.csv?person=dave", server.url)],
    );
    assert_eq!(status, 200, "{csv}");
    assert!(head.contains("content-type: text/csv"), "{head}");
    assert!(head.contains("attachment"), "{head}");
    let mut lines = csv.lines();
    assert!(lines.next().unwrap().starts_with("id,"), "{csv}");
    let rows: Vec<&str> = lines.filter(|l| !l.is_empty()).collect();
    assert!(rows.iter().any(|l| l.starts_with(&d_id)), "{csv}");
    assert!(!csv.contains(&a_id), "{csv}");
    let (status, _, json) = curl(
        &cookie,
        &[&format!("{}/console/report.json?host=db-1", server.url)],
    );
    assert_eq!(status, 200, "{json}");
    let doc: Value = serde_json::from_str(&json).unwrap();
    assert_eq!(doc["trail"]["verified"], true, "{doc}");
    let ids: Vec<&str> = doc["grants"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["grant"]["id"].as_str().unwrap())
        .collect();
    assert!(ids.contains(&d_id.as_str()), "{ids:?}");
    assert!(!ids.contains(&a_id.as_str()), "{ids:?}");

    // The chart: today's bar counts the three grants, marked break-glass.
    let (status, head, svg) = curl(&cookie, &[&format!("{}/console/chart.svg", server.url)]);
    assert_eq!(status, 200, "{svg}");
    assert!(head.contains("content-type: image/svg+xml"), "{head}");
    assert!(svg.starts_with("<svg"), "{svg}");
    assert!(svg.contains(": 3 grant(s), break-glass</title>"), "{svg}");
    assert!(svg.contains("class=\"b\""), "{svg}");
    assert!(!svg.contains("<script"), "{svg}");

    // The break-glass access waits for its review note; recorded here, it
    // leaves the list and the CLI shows it.
    b.goto(&format!("{}/console/requests", server.url));
    let card = format!("#review-{bg_id}");
    assert!(b.text(&card).contains("INC-3 outage"), "{}", b.text("main"));
    b.fill(&format!("#note-{bg_id}"), "checked: the outage needed it");
    b.screenshot("review");
    b.click(&format!("{card} button"));
    b.wait_until("the review to leave the list", true, |b| {
        b.try_find(&card).is_none()
    });
    let v = shown(&carol, &bg_id);
    assert_eq!(v["review"]["note"], "checked: the outage needed it", "{v}");
    assert_eq!(v["review"]["by"], "root", "{v}");
}
