//! The web console at `/`: sign-in and its cookie, CSRF, what each role sees and may do,
//! re-ingest of quarantined records, CSV download, assets, and every page of the sample hub.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use iochub::Hub;
use iochub::config::{self, Overrides};
use reqwest::StatusCode;
use reqwest::header::{self, HeaderMap};

use crate::common::{ADMIN, AGENCY, PEOPLE_SCHEMA, PUBLISHER, TestHub, count, serve};

/// A client that follows no redirect (the tests look at them) and keeps no cookies (the tests
/// send the session cookie themselves).
fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

fn set_cookies(headers: &HeaderMap) -> Vec<String> {
    headers
        .get_all(header::SET_COOKIE)
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .collect()
}

fn cookie_value(headers: &HeaderMap, name: &str) -> Option<String> {
    set_cookies(headers).iter().find_map(|c| {
        c.split(';')
            .next()
            .and_then(|kv| kv.strip_prefix(&format!("{name}=")))
            .map(str::to_string)
    })
}

/// The first hidden CSRF field of a page.
fn csrf_of(body: &str) -> String {
    let marker = "name=\"csrf\" value=\"";
    let start = body.find(marker).expect("a csrf field") + marker.len();
    body[start..].split('"').next().unwrap().to_string()
}

fn form(pairs: &[(&str, &str)]) -> String {
    let mut s = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        s.append_pair(k, v);
    }
    s.finish()
}

/// Signs in with `token`: the sign-in response (a redirect with the cookie, or the form again).
async fn sign_in_response(addr: SocketAddr, token: &str) -> reqwest::Response {
    sign_in_with(&client(), addr, token).await
}

/// Signs in with `token` through client `c` (its cookies are not kept).
async fn sign_in_with(c: &reqwest::Client, addr: SocketAddr, token: &str) -> reqwest::Response {
    let page = c
        .get(format!("http://{addr}/dang-nhap"))
        .send()
        .await
        .unwrap();
    let nonce = cookie_value(page.headers(), "iochub_signin").expect("sign-in cookie");
    let body = page.text().await.unwrap();
    c.post(format!("http://{addr}/dang-nhap"))
        .header(header::COOKIE, format!("iochub_signin={nonce}"))
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(form(&[("csrf", &csrf_of(&body)), ("token", token)]))
        .send()
        .await
        .unwrap()
}

/// A signed-in session id.
async fn session(addr: SocketAddr, token: &str) -> String {
    let response = sign_in_response(addr, token).await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    cookie_value(response.headers(), "iochub_session").expect("session cookie")
}

async fn get(addr: SocketAddr, session: &str, path: &str) -> (StatusCode, HeaderMap, String) {
    let r = client()
        .get(format!("http://{addr}{path}"))
        .header(header::COOKIE, format!("iochub_session={session}"))
        .send()
        .await
        .unwrap();
    let (status, headers) = (r.status(), r.headers().clone());
    (status, headers, r.text().await.unwrap())
}

async fn post(
    addr: SocketAddr,
    session: &str,
    path: &str,
    pairs: &[(&str, &str)],
    origin: Option<&str>,
) -> (StatusCode, HeaderMap, String) {
    let mut request = client()
        .post(format!("http://{addr}{path}"))
        .header(header::COOKIE, format!("iochub_session={session}"))
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(form(pairs));
    if let Some(o) = origin {
        request = request.header(header::ORIGIN, o);
    }
    let r = request.send().await.unwrap();
    let (status, headers) = (r.status(), r.headers().clone());
    (status, headers, r.text().await.unwrap())
}

fn pipeline(name: &str, schema: &str, publishers: &str) -> String {
    format!(
        "name = \"{name}\"\ntitle = \"Dữ liệu {name}\"\nsector = \"test\"\n\
         schema = \"../schemas/{schema}\"\nkey = [\"id\"]\nsharing = \"default\"\n\
         publishers = [{publishers}]\nschedule = \"0 0 * * * *\"\n\n[source]\n\
         kind = \"file\"\npath = \"../in_{name}/*.jsonl\"\nformat = \"jsonl\"\n"
    )
}

/// A hub with `items` (published by `pub`, one record quarantined) and `people` (personal
/// data, published by the admin office), ingested and served.
async fn console_hub() -> (TestHub, Arc<Hub>, SocketAddr) {
    let t = TestHub::new();
    t.write("schemas/people.schema.json", PEOPLE_SCHEMA);
    for (name, schema, publishers) in [
        ("items", "simple.schema.json", "\"pub\""),
        ("people", "people.schema.json", "\"admin\""),
    ] {
        std::fs::create_dir_all(t.path().join(format!("in_{name}"))).unwrap();
        t.write(
            &format!("pipelines/{name}.toml"),
            pipeline(name, schema, publishers),
        );
    }
    t.write(
        "in_items/a.jsonl",
        "{\"id\": \"a1\", \"n\": 1, \"name\": \"Mục một\"}\n{\"id\": \"b1\", \"n\": -1}\n",
    );
    t.write(
        "in_people/a.jsonl",
        "{\"id\": \"p1\", \"n\": 1, \"phone\": \"0912345678\", \"score\": 7.5}\n",
    );
    let hub = t.open().await;
    for r in hub.run_all("test").await {
        assert_eq!(r.error, None, "{r:?}");
    }
    let addr = serve(hub.clone()).await;
    (t, hub, addr)
}

fn share_request(name: &str) -> iochub::sharing::GrantRequest {
    serde_json::from_value(serde_json::json!({
        "name": name,
        "purpose": "Theo dõi",
        "legal_basis": "Quyết định số 1",
        "dataset": "items",
        "end_date": "2099-12-31",
    }))
    .unwrap()
}

#[tokio::test]
async fn sign_in_sets_a_strict_session_cookie_and_sign_out_ends_it() {
    let (_t, _hub, addr) = console_hub().await;

    // Not signed in: every page sends to the sign-in form.
    let r = client()
        .get(format!("http://{addr}/"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(r.headers()[header::LOCATION], "/dang-nhap");

    // A wrong token: refused with a message, and no session.
    let wrong = sign_in_response(addr, "not-a-token").await;
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    assert!(cookie_value(wrong.headers(), "iochub_session").is_none());
    assert!(
        wrong
            .text()
            .await
            .unwrap()
            .contains("Mã truy cập không đúng")
    );

    // The right one: a random session id (not the token) in a strict cookie.
    let ok = sign_in_response(addr, ADMIN).await;
    assert_eq!(ok.status(), StatusCode::SEE_OTHER);
    assert_eq!(ok.headers()[header::LOCATION], "/");
    let cookie = set_cookies(ok.headers())
        .into_iter()
        .find(|c| c.starts_with("iochub_session="))
        .expect("session cookie");
    for flag in ["HttpOnly", "Secure", "SameSite=Strict", "Path=/"] {
        assert!(cookie.split("; ").any(|f| f == flag), "{flag} in {cookie}");
    }
    let id = cookie_value(ok.headers(), "iochub_session").unwrap();
    assert_eq!(id.len(), 64);
    assert!(!cookie.contains(ADMIN), "the token is not in the cookie");

    let (status, _, body) = get(addr, &id, "/").await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.contains("<h1>Tổng quan</h1>"), "{body}");
    assert!(body.contains("lang=\"vi\""));

    // A sign-in post without its double-submit cookie is refused.
    let forged = client()
        .post(format!("http://{addr}/dang-nhap"))
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(form(&[("csrf", "x"), ("token", ADMIN)]))
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), StatusCode::FORBIDDEN);

    // Sign-out needs the CSRF token too, then the session is gone.
    let (status, _, _) = post(addr, &id, "/dang-xuat", &[], None).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let csrf = csrf_of(&body);
    let (status, headers, _) = post(addr, &id, "/dang-xuat", &[("csrf", &csrf)], None).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert!(
        set_cookies(&headers)
            .iter()
            .any(|c| c.starts_with("iochub_session=;") && c.contains("Max-Age=0"))
    );
    let (status, headers, _) = get(addr, &id, "/").await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(headers[header::LOCATION], "/dang-nhap");
}

#[tokio::test]
async fn a_post_without_the_right_csrf_token_is_refused_and_changes_nothing() {
    let (_t, hub, addr) = console_hub().await;
    let agency = hub.authenticate(AGENCY).unwrap();
    let filed = hub
        .file_share_request(&agency, share_request("theo_doi"))
        .await
        .unwrap();
    let id = filed.grant.id.clone();
    let admin = session(addr, ADMIN).await;
    let (_, _, page) = get(addr, &admin, "/chia-se").await;
    let csrf = csrf_of(&page);
    let approve = format!("/chia-se/{id}/approve");
    for (pairs, origin) in [
        (vec![], None),
        (vec![("csrf", "0".repeat(64))], None),
        (vec![("csrf", csrf.clone())], Some("http://evil.example")),
    ] {
        let pairs: Vec<(&str, &str)> = pairs.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let (status, _, body) = post(addr, &admin, &approve, &pairs, origin).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{pairs:?} {origin:?}");
        assert!(body.contains("Biểu mẫu đã hết hiệu lực"), "{body}");
        let status = hub.share_requests_for(&agency).unwrap()[0].request.status;
        assert_eq!(status, iochub::state::ShareStatus::Pending);
    }
    // Another session's token is not this session's.
    let other = session(addr, ADMIN).await;
    let (_, _, other_page) = get(addr, &other, "/chia-se").await;
    let (status, _, _) = post(
        addr,
        &admin,
        &approve,
        &[("csrf", &csrf_of(&other_page))],
        None,
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    let origin = format!("http://{addr}");
    let (status, headers, _) =
        post(addr, &admin, &approve, &[("csrf", &csrf)], Some(&origin)).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(headers[header::LOCATION], "/chia-se?ket_qua=duyet");
    let status = hub.share_requests_for(&agency).unwrap()[0].request.status;
    assert_eq!(status, iochub::state::ShareStatus::Approved);
    let (_, _, page) = get(addr, &admin, "/chia-se?ket_qua=duyet").await;
    assert!(page.contains("Đã duyệt yêu cầu chia sẻ."));
    assert!(page.contains("share.theo_doi"));
}

#[tokio::test]
async fn an_agency_sees_no_approve_buttons_and_cannot_approve() {
    let (_t, hub, addr) = console_hub().await;
    let agency = hub.authenticate(AGENCY).unwrap();
    let filed = hub
        .file_share_request(&agency, share_request("cua_toi"))
        .await
        .unwrap();
    let id = filed.grant.id;
    let s = session(addr, AGENCY).await;
    let (status, _, page) = get(addr, &s, "/chia-se").await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains("share.cua_toi"), "its own request is listed");
    assert!(!page.contains("/approve"), "no approve form: {page}");
    assert!(!page.contains(">Duyệt<"));
    assert!(!page.contains("Nhật ký truy cập"), "no audit log");
    let csrf = csrf_of(&page);
    let (status, _, body) = post(
        addr,
        &s,
        &format!("/chia-se/{id}/approve"),
        &[("csrf", &csrf)],
        None,
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(body.contains("không có quyền"), "{body}");
    assert_eq!(
        hub.share_requests_for(&agency).unwrap()[0].request.status,
        iochub::state::ShareStatus::Pending
    );
    // Reports are for the office and the province.
    let (status, _, page) = get(addr, &s, "/").await;
    assert!(!page.contains("href=\"/bao-cao\""));
    assert_eq!(status, StatusCode::OK);
    let (status, _, _) = get(addr, &s, "/bao-cao").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn a_publisher_sees_what_its_visibility_allows() {
    let (_t, _hub, addr) = console_hub().await;
    let publisher = session(addr, PUBLISHER).await;
    let (status, _, people) = get(addr, &publisher, "/du-lieu/people").await;
    assert_eq!(status, StatusCode::OK);
    assert!(people.contains("091****678"), "masked phone: {people}");
    assert!(!people.contains("0912345678"));
    assert!(
        !people.contains("id=\"cach-ly\""),
        "not its dataset: no quarantine"
    );
    assert!(people.contains("Che một phần số điện thoại"));
    // Its own dataset: clear, with its quarantine.
    let (_, _, items) = get(addr, &publisher, "/du-lieu/items").await;
    assert!(items.contains("id=\"cach-ly\""));
    // The overview shows only its own connection.
    let (_, _, overview) = get(addr, &publisher, "/").await;
    assert!(overview.contains("<code>items</code>"));
    assert!(!overview.contains("<code>people</code>"));
    // The office, which publishes `people`, sees it clear.
    let admin = session(addr, ADMIN).await;
    let (_, _, people) = get(addr, &admin, "/du-lieu/people").await;
    assert!(people.contains("0912345678"));
    // SQL in the console goes through the same catalog.
    let (_, _, sql_page) = get(addr, &publisher, "/sql").await;
    let (status, _, answer) = post(
        addr,
        &publisher,
        "/sql",
        &[
            ("csrf", &csrf_of(&sql_page)),
            ("sql", "SELECT phone FROM people"),
        ],
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert!(answer.contains("091****678") && !answer.contains("0912345678"));
}

/// The hidden `run_id` and `location` of the first re-ingest form on a dataset page.
fn reingest_fields(page: &str) -> (String, String, String) {
    let field = |name: &str| {
        let marker = format!("name=\"{name}\" value=\"");
        let start = page.find(&marker).expect(name) + marker.len();
        page[start..].split('"').next().unwrap().to_string()
    };
    (field("run_id"), field("source"), field("location"))
}

#[tokio::test]
async fn reingest_stores_a_fixed_record_and_keeps_a_broken_one_quarantined() {
    let (_t, hub, addr) = console_hub().await;
    let s = session(addr, PUBLISHER).await;
    let (_, _, page) = get(addr, &s, "/du-lieu/items").await;
    assert!(page.contains("Đang cách ly"));
    let (run_id, source, location) = reingest_fields(&page);
    let csrf = csrf_of(&page);
    let path = "/du-lieu/items/nop-lai";

    // Still broken: refused with the reasons and the text kept; nothing stored or resolved.
    let broken = "{\"id\": \"b1\", \"n\": -2}";
    let (status, _, body) = post(
        addr,
        &s,
        path,
        &[
            ("csrf", &csrf),
            ("run_id", &run_id),
            ("source", &source),
            ("location", &location),
            ("raw", broken),
        ],
        None,
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(body.contains("lớn hơn hoặc bằng 0"), "{body}");
    assert!(
        body.contains("&quot;n&quot;: -2"),
        "the edit is kept: {body}"
    );
    assert_eq!(
        count(&hub, "SELECT count(*) FROM items WHERE id = 'b1'").await,
        0
    );
    let (_, _, page) = get(addr, &s, "/du-lieu/items").await;
    assert!(page.contains("Đang cách ly") && !page.contains("Đã xử lý"));

    // Not JSON at all: a reason, not an error page.
    let (status, _, body) = post(
        addr,
        &s,
        path,
        &[
            ("csrf", &csrf),
            ("run_id", &run_id),
            ("source", &source),
            ("location", &location),
            ("raw", "{\"id\": "),
        ],
        None,
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(body.contains("không phải JSON hợp lệ"), "{body}");

    // Fixed: stored through the publish path, and the quarantine row marked resolved.
    let fixed = "{\"id\": \"b1\", \"n\": 3}";
    let (status, headers, _) = post(
        addr,
        &s,
        path,
        &[
            ("csrf", &csrf),
            ("run_id", &run_id),
            ("source", &source),
            ("location", &location),
            ("raw", fixed),
        ],
        None,
    )
    .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(
        headers[header::LOCATION],
        "/du-lieu/items?ket_qua=da-luu#cach-ly"
    );
    assert_eq!(count(&hub, "SELECT n FROM items WHERE id = 'b1'").await, 3);
    let publisher = hub.authenticate(PUBLISHER).unwrap();
    let resolved = hub.quarantine_resolutions(&publisher, "items").unwrap();
    assert_eq!(resolved.len(), 1);
    assert_eq!(
        (resolved[0].run_id.as_str(), resolved[0].location.as_str()),
        (run_id.as_str(), location.as_str())
    );
    let (_, _, page) = get(addr, &s, "/du-lieu/items?ket_qua=da-luu").await;
    assert!(page.contains("Đã xử lý"), "{page}");
    assert!(page.contains("Bản ghi đã sửa được lưu"));
    // The quarantine table itself is append-only: the original row is still there.
    assert!(
        count(
            &hub,
            &format!("SELECT count(*) FROM quarantine WHERE run_id = '{run_id}' AND location = '{location}'")
        )
        .await
            == 1
    );
    // Once resolved, it cannot be stored twice.
    let (status, _, _) = post(
        addr,
        &s,
        path,
        &[
            ("csrf", &csrf),
            ("run_id", &run_id),
            ("source", &source),
            ("location", &location),
            ("raw", fixed),
        ],
        None,
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT);
    // An agency may not re-ingest.
    let agency = session(addr, AGENCY).await;
    let (_, _, agency_page) = get(addr, &agency, "/du-lieu/items").await;
    assert!(!agency_page.contains("nop-lai"));
    let (status, _, _) = post(
        addr,
        &agency,
        path,
        &[
            ("csrf", &csrf_of(&agency_page)),
            ("run_id", &run_id),
            ("source", &source),
            ("location", &location),
            ("raw", fixed),
        ],
        None,
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn csv_download_is_the_sql_answer_made_safe_for_spreadsheets() {
    let (_t, _hub, addr) = console_hub().await;
    let s = session(addr, ADMIN).await;
    let (_, _, page) = get(addr, &s, "/sql").await;
    let csrf = csrf_of(&page);
    let sql = "SELECT id, n, name FROM items ORDER BY id";
    let (status, headers, csv) =
        post(addr, &s, "/sql/csv", &[("csrf", &csrf), ("sql", sql)], None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers[header::CONTENT_TYPE], "text/csv; charset=utf-8");
    assert!(
        headers[header::CONTENT_DISPOSITION]
            .to_str()
            .unwrap()
            .starts_with("attachment")
    );
    let api = crate::common::admin_client()
        .post(format!("http://{addr}/api/v1/sql"))
        .header(header::ACCEPT, "text/csv")
        .json(&serde_json::json!({ "sql": sql }))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    // The API's CSV, with a byte-order mark for spreadsheets.
    assert_eq!(csv.strip_prefix('\u{feff}'), Some(api.as_str()));
    assert!(csv.contains("a1,1,Mục một"), "{csv}");
    // Text a spreadsheet would run as a formula is made text; numbers stay numbers.
    let formulas = "SELECT '=HYPERLINK(\"http://x\")' AS a, '-2+3' AS b, -2 AS n";
    let (_, _, csv) = post(
        addr,
        &s,
        "/sql/csv",
        &[("csrf", &csrf), ("sql", formulas)],
        None,
    )
    .await;
    let lines: Vec<&str> = csv.trim_start_matches('\u{feff}').lines().collect();
    assert_eq!(
        lines,
        ["a,b,n", "\"'=HYPERLINK(\"\"http://x\"\")\",'-2+3,-2"],
        "{csv}"
    );
    // The page shows the same rows as a table; a failing query is explained on the page.
    let (status, _, html) = post(addr, &s, "/sql", &[("csrf", &csrf), ("sql", sql)], None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        html.contains("<td>a1</td><td>1</td><td>Mục một</td>"),
        "{html}"
    );
    let (status, _, html) = post(
        addr,
        &s,
        "/sql",
        &[("csrf", &csrf), ("sql", "DROP TABLE items")],
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains("Chỉ được phép truy vấn đọc"), "{html}");
    // Without the CSRF token, no query runs.
    let (status, _, _) = post(addr, &s, "/sql/csv", &[("sql", sql)], None).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn assets_are_embedded_with_types_caching_and_a_strict_policy() {
    let (_t, _hub, addr) = console_hub().await;
    let s = session(addr, ADMIN).await;
    let (_, headers, page) = get(addr, &s, "/").await;
    let csp = headers[header::CONTENT_SECURITY_POLICY].to_str().unwrap();
    assert!(csp.starts_with("default-src 'self'"), "{csp}");
    assert!(csp.contains("frame-ancestors 'none'"));
    assert_eq!(headers[header::CACHE_CONTROL], "no-store");
    assert_eq!(headers[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
    assert!(
        !page.contains("http://") && !page.contains("https://"),
        "nothing external"
    );
    for (name, content_type) in [
        ("console.css", "text/css; charset=utf-8"),
        ("console.js", "text/javascript; charset=utf-8"),
    ] {
        let marker = format!("/assets/{name}?v=");
        let start = page.find(&marker).expect("asset linked");
        let url = page[start..].split('"').next().unwrap();
        // Assets need no session (the sign-in page uses them).
        let r = client()
            .get(format!("http://{addr}{url}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(r.headers()[header::CONTENT_TYPE], content_type);
        assert!(
            r.headers()[header::CACHE_CONTROL]
                .to_str()
                .unwrap()
                .contains("immutable")
        );
        let body = r.text().await.unwrap();
        let local = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("src/console/assets")
                .join(name),
        )
        .unwrap();
        assert_eq!(body, local);
    }
}

/// The shipped config and samples, ingested, with the admin's token.
async fn sample_hub(data: &Path) -> (Arc<Hub>, String) {
    let overrides = Overrides {
        data_dir: Some(data.to_path_buf()),
        ..Default::default()
    };
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let config = config::load(&repo.join("config.toml"), &overrides).unwrap();
    // Without IOCHUB_TOKEN_IOC_ADMIN, the hub made a token at load; take it from there.
    let token = config
        .generated_tokens
        .iter()
        .find(|g| g.consumer == "ioc_admin")
        .map(|g| g.token.clone())
        .or_else(|| std::env::var("IOCHUB_TOKEN_IOC_ADMIN").ok())
        .expect("an admin token");
    let hub = Hub::open(config).await.unwrap();
    for r in hub.run_all("test").await {
        assert_eq!(r.error, None, "{r:?}");
    }
    (hub, token)
}

#[tokio::test]
async fn every_page_of_the_sample_hub_renders_with_its_vietnamese_heading() {
    let data = tempfile::tempdir().unwrap();
    let (hub, token) = sample_hub(data.path()).await;
    let addr = serve(hub).await;
    let s = session(addr, &token).await;
    for (path, h1, expect) in [
        ("/", "Tổng quan", "Kết nối dữ liệu"),
        (
            "/phan-anh",
            "Phản ánh hiện trường",
            "Bản đồ phản ánh quá hạn theo đơn vị",
        ),
        (
            "/phan-anh?tu=2025-04-01&den=2025-04-30",
            "Phản ánh hiện trường",
            "từ 01/04/2025 đến 30/04/2025",
        ),
        ("/du-lieu", "Danh mục dữ liệu", "citizen_reports"),
        (
            "/du-lieu/dossier_stats",
            "Thống kê hồ sơ thủ tục hành chính",
            "Số hồ sơ không cân đối",
        ),
        ("/sql", "Truy vấn SQL", "Câu lệnh SQL"),
        ("/chia-se", "Chia sẻ dữ liệu", "Nhật ký truy cập"),
        ("/bao-cao", "Báo cáo định kỳ", "ioc_operation"),
    ] {
        let (status, _, body) = get(addr, &s, path).await;
        assert_eq!(status, StatusCode::OK, "{path}: {body}");
        assert!(body.contains(&format!("<h1>{h1}</h1>")), "{path}: {body}");
        assert_eq!(body.matches("<h1").count(), 1, "{path}: one h1");
        assert!(body.contains(expect), "{path} lacks {expect:?}");
    }
    // The map draws the 11 pre-merger units from the GeoJSON.
    let (_, _, citizen) = get(addr, &s, "/phan-anh?den=2025-06-30").await;
    assert_eq!(citizen.matches("<path ").count(), 11, "{citizen}");
    // The April 2025 report, as HTML (its own policy: inline styles) and XLSX.
    let (status, headers, report) = get(addr, &s, "/bao-cao/ioc_operation/2025-04").await;
    assert_eq!(status, StatusCode::OK);
    assert!(report.contains("2025"), "{report}");
    assert!(
        headers[header::CONTENT_SECURITY_POLICY]
            .to_str()
            .unwrap()
            .starts_with("default-src 'none'")
    );
    let (status, headers, _) =
        get(addr, &s, "/bao-cao/ioc_operation?ky=2025-04&dinh_dang=xlsx").await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(
        headers[header::LOCATION],
        "/bao-cao/ioc_operation/2025-04?dinh_dang=xlsx"
    );
    let r = client()
        .get(format!(
            "http://{addr}/bao-cao/ioc_operation/2025-04?dinh_dang=xlsx"
        ))
        .header(header::COOKIE, format!("iochub_session={s}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(
        r.headers()[header::CONTENT_DISPOSITION]
            .to_str()
            .unwrap()
            .contains("ioc_operation_2025-04.xlsx")
    );
    assert!(r.bytes().await.unwrap().starts_with(b"PK"));
    // A period typed wrong gets a Vietnamese explanation, not a panic.
    let (status, _, body) = get(addr, &s, "/bao-cao/ioc_operation?ky=tháng-tư").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body.contains("Kỳ báo cáo"), "{body}");
    // An unknown dataset is a friendly 404.
    let (status, _, body) = get(addr, &s, "/du-lieu/khong_co").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(body.contains("Không tìm thấy"), "{body}");
}

/// Signs in from a given local address (the whole of 127.0.0.0/8 is this machine).
async fn sign_in_from(addr: SocketAddr, from: [u8; 4], token: &str) -> StatusCode {
    let c = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .local_address(std::net::IpAddr::from(from))
        .build()
        .unwrap();
    sign_in_with(&c, addr, token).await.status()
}

#[tokio::test]
async fn guessing_tokens_is_bounded_per_address_and_does_not_lock_out_others() {
    let t = TestHub::new();
    t.append_config("\n[auth]\nrequests_per_minute = 1\nburst = 3\n");
    let hub = t.open().await;
    let addr = serve(hub.clone()).await;
    let guesser = [127, 0, 0, 7];
    for _ in 0..3 {
        assert_eq!(
            sign_in_from(addr, guesser, "guess").await,
            StatusCode::UNAUTHORIZED
        );
    }
    // The allowance is spent: the next try is refused before its token is tested, so even
    // the right token does not get in from there (a guess that happens to be right is no
    // use either).
    assert_eq!(
        sign_in_from(addr, guesser, "guess").await,
        StatusCode::TOO_MANY_REQUESTS
    );
    assert_eq!(
        sign_in_from(addr, guesser, ADMIN).await,
        StatusCode::TOO_MANY_REQUESTS
    );
    // Another address signs in as usual.
    assert_eq!(
        sign_in_from(addr, [127, 0, 0, 8], ADMIN).await,
        StatusCode::SEE_OTHER
    );

    // A sign-in body is read before anyone is known: a large one is refused unread.
    let big = format!("csrf=x&token={}", "a".repeat(100 * 1024));
    let r = client()
        .post(format!("http://{addr}/dang-nhap"))
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(big)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert!(r.text().await.unwrap().contains("quá lớn"));
}

/// The quarantine rows of `dataset` as (run_id, source, location).
async fn quarantined(hub: &Hub, dataset: &str) -> Vec<(String, String, String)> {
    crate::common::rows(
        hub,
        &format!("SELECT run_id, source, location FROM quarantine WHERE dataset = '{dataset}' ORDER BY source"),
    )
    .await
    .into_iter()
    .map(|r| {
        let text = |i: usize| r[i].as_str().unwrap().to_string();
        (text(0), text(1), text(2))
    })
    .collect()
}

#[tokio::test]
async fn reingest_knows_a_record_by_its_file_and_stores_a_fix_once_however_often_it_is_sent() {
    let t = TestHub::new();
    std::fs::create_dir_all(t.path().join("in_log")).unwrap();
    // No key: every stored record is a new row, so a second store would be a duplicate.
    t.write(
        "pipelines/log.toml",
        pipeline("log", "simple.schema.json", "\"pub\"").replace("key = [\"id\"]\n", ""),
    );
    // Two files of one run, each with a bad record on its line 2.
    t.write(
        "in_log/a.jsonl",
        "{\"id\": \"a1\", \"n\": 1}\n{\"id\": \"a2\", \"n\": -1}\n",
    );
    t.write(
        "in_log/b.jsonl",
        "{\"id\": \"b1\", \"n\": 1}\n{\"id\": \"b2\", \"n\": -1}\n",
    );
    let hub = t.open().await;
    hub.run("log", "test").await.unwrap();
    let rows = quarantined(&hub, "log").await;
    assert_eq!(rows.len(), 2);
    assert_eq!(
        rows[0].2, rows[1].2,
        "the same location in both files: {rows:?}"
    );
    let publisher = hub.authenticate(PUBLISHER).unwrap();
    let id = |i: usize| iochub::hub::QuarantineRowId {
        run_id: &rows[i].0,
        source: &rows[i].1,
        location: &rows[i].2,
    };

    // The fix of a.jsonl's record, sent twice at once: stored once, the other is a conflict.
    let a = id(0);
    let (first, second) = tokio::join!(
        hub.reingest(&publisher, "log", &a, "{\"id\": \"a2\", \"n\": 2}"),
        hub.reingest(&publisher, "log", &a, "{\"id\": \"a2\", \"n\": 2}"),
    );
    let outcomes = [first, second];
    assert_eq!(
        outcomes
            .iter()
            .filter(|o| o.as_ref().is_ok_and(|o| o.stored))
            .count(),
        1
    );
    assert!(
        outcomes
            .iter()
            .any(|o| matches!(o, Err(iochub::hub::HubError::Conflict(_)))),
        "{outcomes:?}"
    );
    assert_eq!(
        count(&hub, "SELECT count(*) FROM log WHERE id = 'a2'").await,
        1
    );

    // Only a.jsonl's record is resolved: b.jsonl's, at the same line, is still open and can
    // be fixed in turn.
    let resolved = hub.quarantine_resolutions(&publisher, "log").unwrap();
    assert_eq!(resolved.len(), 1);
    assert_eq!(resolved[0].source, rows[0].1);
    let b = hub
        .reingest(&publisher, "log", &id(1), "{\"id\": \"b2\", \"n\": 5}")
        .await
        .unwrap();
    assert!(b.stored);
    assert_eq!(count(&hub, "SELECT n FROM log WHERE id = 'b2'").await, 5);
}

#[tokio::test]
async fn a_csv_record_goes_back_as_text_cells_typed_by_column() {
    let t = TestHub::new();
    std::fs::create_dir_all(t.path().join("in_rows")).unwrap();
    t.write(
        "pipelines/rows.toml",
        pipeline("rows", "simple.schema.json", "\"pub\"")
            .replace("*.jsonl\"\nformat = \"jsonl\"", "*.csv\"\nformat = \"csv\""),
    );
    t.write(
        "in_rows/a.csv",
        "id,n,name,day\nr1,1,Một,2025-04-01\nr2,không,Hai,\n",
    );
    let hub = t.open().await;
    hub.run("rows", "test").await.unwrap();
    let rows = quarantined(&hub, "rows").await;
    assert_eq!(rows.len(), 1, "the row whose n is not a number");
    let publisher = hub.authenticate(PUBLISHER).unwrap();
    let id = iochub::hub::QuarantineRowId {
        run_id: &rows[0].0,
        source: &rows[0].1,
        location: &rows[0].2,
    };
    // As the clerk edits it: every cell text, the empty day still empty.
    let fixed = "{\"id\": \"r2\", \"n\": \"2\", \"name\": \"Hai\", \"day\": \"\"}";
    let outcome = hub.reingest(&publisher, "rows", &id, fixed).await.unwrap();
    assert!(outcome.stored, "{:?}", outcome.report);
    let stored = crate::common::rows(&hub, "SELECT n, day IS NULL FROM rows WHERE id = 'r2'").await;
    assert_eq!(stored, [[serde_json::json!(2), serde_json::json!(true)]]);
}

#[tokio::test]
async fn after_the_merger_the_map_and_table_count_the_new_communes_apart_from_the_old() {
    let data = tempfile::tempdir().unwrap();
    let (hub, token) = sample_hub(data.path()).await;
    let publisher_token = hub
        .config
        .generated_tokens
        .iter()
        .find(|g| g.consumer == "phan_anh")
        .map(|g| g.token.clone())
        .or_else(|| std::env::var("IOCHUB_TOKEN_PHAN_ANH").ok())
        .expect("the feedback app's token");
    let publisher = hub.authenticate(&publisher_token).unwrap();
    // Two reports of July 2025, after the merger, that name the new Xã Đồng Phú (which kept
    // Thị trấn Tân Phú's code 25363 and took in Xã Tân Tiến and Xã Tân Lập). Never answered.
    let report =
        |id: &str| crate::common::citizen_report(id, "2025-07-10T09:00:00+07:00", "Xã Đồng Phú");
    let body = serde_json::json!([report("BPT-2025-JUL001"), report("BPT-2025-JUL002")]);
    let published = hub
        .publish(
            &publisher,
            "citizen_reports",
            "application/json",
            body.to_string().as_bytes(),
        )
        .await
        .unwrap();
    assert_eq!(published.accepted, 2, "{published:?}");
    let addr = serve(hub).await;
    let s = session(addr, &token).await;
    let (status, _, page) = get(addr, &s, "/phan-anh?tu=2025-07-01&den=2025-07-31").await;
    assert_eq!(status, StatusCode::OK);
    // The table names the new commune with its own counts.
    assert!(
        page.contains("<th scope=\"row\">Xã Đồng Phú</th>"),
        "{page}"
    );
    // No areas are known after the merger: the former units are drawn, each carrying the
    // count of the commune it merged into, Xã Tân Tiến (25393) included although its code
    // is not the new commune's.
    assert!(page.contains("data-code=\"25363\">2<"), "{page}");
    assert!(page.contains("data-code=\"25393\">2<"), "{page}");
    assert!(page.contains("đơn vị mới mà nó được sáp nhập vào"));
    assert!(page.contains("Từ 3 phản ánh quá hạn trở lên"));
}
