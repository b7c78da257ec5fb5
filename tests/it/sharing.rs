//! Sharing: what each consumer sees in every interface, special-request shares end to end
//! (with a hand-set clock for deadlines and expiry), authentication errors, publishing, audit.

use std::net::SocketAddr;
use std::sync::Arc;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::common::{ADMIN, AGENCY, ManualClock, PROVINCE, PUBLISHER, TestHub, client_with, serve};

const PEOPLE_SCHEMA: &str = r#"{
  "type": "object",
  "required": ["id", "commune"],
  "properties": {
    "id": {"type": "string", "description": "Mã phản ánh"},
    "commune": {"type": "string", "description": "Xã"},
    "name": {"type": "string", "x-pii": true, "x-mask": "initials", "description": "Họ tên"},
    "phone": {"type": "string", "pattern": "^0[0-9]{9}$", "x-pii": true, "x-mask": "phone", "description": "Điện thoại"},
    "address": {"type": "string", "x-pii": true, "x-mask": "hide", "description": "Địa chỉ"},
    "lat": {"type": "number", "x-pii": true, "x-mask": "round-coordinates", "description": "Vĩ độ"},
    "n": {"type": "integer", "minimum": 0, "description": "Số lượng"}
  }
}"#;

const ROWS: &str = "{\"id\": \"r1\", \"commune\": \"A\", \"name\": \"Nguyễn Văn An\", \"phone\": \"0912345678\", \"address\": \"Tổ 3, ấp 2\", \"lat\": 11.423456, \"n\": 1}\n\
{\"id\": \"r2\", \"commune\": \"B\", \"name\": \"Trần Thị Bình\", \"phone\": \"0987654321\", \"address\": \"Tổ 5, ấp 1\", \"lat\": 11.51, \"n\": 2}\n\
{\"id\": \"r3\", \"commune\": \"A\", \"name\": \"Lê Hoàng Cường\", \"phone\": \"0911222333\", \"address\": \"Tổ 1, ấp 4\", \"lat\": 11.35, \"n\": 3}\n\
{\"id\": \"bad\", \"commune\": \"A\", \"phone\": \"12\"}\n";

struct Setup {
    _t: TestHub,
    addr: SocketAddr,
    clock: Arc<ManualClock>,
}

/// Two datasets of the same rows: `people` (default sharing) and `secret` (special), both
/// published by `pub`.
async fn setup(extra_config: &str) -> Setup {
    let t = TestHub::new();
    t.append_config(extra_config);
    t.write("schemas/people.schema.json", PEOPLE_SCHEMA);
    for (name, sharing) in [("people", "default"), ("secret", "special")] {
        t.write(
            &format!("pipelines/{name}.toml"),
            format!(
                "name = \"{name}\"\ntitle = \"Người dân ({name})\"\nsector = \"test\"\nschema = \"../schemas/people.schema.json\"\n\
                 key = [\"id\"]\nsharing = \"{sharing}\"\npublishers = [\"pub\"]\nschedule = \"0 * * * *\"\n\n\
                 [source]\nkind = \"file\"\npath = \"../inbox/people.jsonl\"\nformat = \"jsonl\"\n"
            ),
        );
    }
    t.write("inbox/people.jsonl", ROWS);
    let clock = ManualClock::new("2026-11-30T02:00:00Z"); // Monday 09:00 in Hà Nội
    let hub = t.open_with_clock(clock.clone()).await;
    hub.run("people", "test").await.unwrap();
    hub.run("secret", "test").await.unwrap();
    let addr = serve(hub).await;
    Setup { _t: t, addr, clock }
}

async fn sql(addr: SocketAddr, token: &str, sql: &str) -> (StatusCode, Value) {
    let r = client_with(token)
        .post(format!("http://{addr}/api/v1/sql"))
        .json(&json!({"sql": sql}))
        .send()
        .await
        .unwrap();
    (r.status(), r.json().await.unwrap())
}

async fn get(addr: SocketAddr, token: &str, path: &str) -> (StatusCode, Value) {
    let r = client_with(token)
        .get(format!("http://{addr}{path}"))
        .send()
        .await
        .unwrap();
    (r.status(), r.json().await.unwrap_or(Value::Null))
}

async fn post(addr: SocketAddr, token: &str, path: &str, body: Value) -> (StatusCode, Value) {
    let r = client_with(token)
        .post(format!("http://{addr}{path}"))
        .json(&body)
        .send()
        .await
        .unwrap();
    (r.status(), r.json().await.unwrap_or(Value::Null))
}

const MASKED_R1: [&str; 4] = ["N. V. A.", "091****678", "null", "11.42"];
const CLEAR_R1: [&str; 4] = ["Nguyễn Văn An", "0912345678", "Tổ 3, ấp 2", "11.423456"];

fn cells(row: &Value) -> Vec<String> {
    row.as_array()
        .unwrap()
        .iter()
        .map(|v| match v {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        })
        .collect()
}

#[tokio::test]
async fn each_consumer_sees_exactly_its_view_in_every_sql_form() {
    let s = setup("").await;
    let first = "SELECT name, phone, address, lat FROM people WHERE id = 'r1'";
    for (token, expected) in [
        (AGENCY, MASKED_R1),
        (PROVINCE, MASKED_R1),
        (ADMIN, MASKED_R1),
        (PUBLISHER, CLEAR_R1),
    ] {
        let (status, body) = sql(s.addr, token, first).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(cells(&body["rows"][0]), expected, "token {token}");
    }
    // Every SQL form goes through the same masked view.
    let forms = [
        "SELECT * FROM people WHERE id = 'r1'",
        "SELECT p.phone FROM people p JOIN people q ON p.id = q.id WHERE p.id = 'r1'",
        "SELECT phone FROM (SELECT * FROM people) sub WHERE id = 'r1'",
        "WITH x AS (SELECT phone, id FROM people) SELECT phone FROM x WHERE id = 'r1'",
        "SELECT phone FROM people WHERE id = 'r1' UNION ALL SELECT phone FROM people WHERE id = 'r1'",
        "SELECT max(phone) FROM people WHERE id = 'r1'",
        "SELECT phone FROM people WHERE phone = '0912345678'",
    ];
    for form in forms {
        let (status, body) = sql(s.addr, AGENCY, form).await;
        assert_eq!(status, StatusCode::OK, "{form}: {body}");
        let text = body["rows"].to_string();
        assert!(
            !text.contains("0912345678") && !text.contains("Nguyễn Văn An"),
            "{form} leaked: {text}"
        );
    }
    // A special dataset answers exactly like a table that does not exist.
    let (_, hidden) = sql(s.addr, AGENCY, "SELECT * FROM secret").await;
    let (_, missing) = sql(s.addr, AGENCY, "SELECT * FROM nosuchtable").await;
    assert_eq!(
        hidden["error"]["message"]
            .as_str()
            .unwrap()
            .replace("secret", "X"),
        missing["error"]["message"]
            .as_str()
            .unwrap()
            .replace("nosuchtable", "X")
    );
    assert_eq!(hidden["error"]["code"], missing["error"]["code"]);
    // No way around the catalog: the raw tables, other catalogs, the quarantine, the audit.
    for sneaky in [
        "SELECT * FROM base.people",
        "SELECT * FROM datafusion.base.people",
        "SELECT * FROM quarantine",
        "SELECT * FROM audit",
        "SELECT * FROM share.anything",
    ] {
        let (status, body) = sql(s.addr, AGENCY, sneaky).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{sneaky}: {body}");
    }
    let (_, tables) = sql(s.addr, AGENCY, "SELECT table_schema, table_name FROM information_schema.tables WHERE table_schema <> 'information_schema' ORDER BY 2").await;
    assert_eq!(
        tables["rows"],
        json!([["public", "people"]]),
        "information_schema lists only the view"
    );
    // The publisher sees its special dataset, unmasked, and its quarantine.
    let (status, body) = sql(s.addr, PUBLISHER, "SELECT count(*) FROM secret").await;
    assert_eq!(
        (status, body["rows"].clone()),
        (StatusCode::OK, json!([[3]]))
    );
    let (_, q) = sql(
        s.addr,
        PUBLISHER,
        "SELECT DISTINCT dataset FROM quarantine ORDER BY 1",
    )
    .await;
    assert_eq!(q["rows"], json!([["people"], ["secret"]]));
}

#[tokio::test]
async fn catalog_and_quarantine_follow_the_same_rules() {
    let s = setup("").await;
    let (_, agency) = get(s.addr, AGENCY, "/api/v1/datasets").await;
    let names: Vec<&str> = agency["datasets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["people"]);
    let columns = &agency["datasets"][0]["columns"];
    let phone = columns
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "phone")
        .unwrap();
    assert_eq!(phone["mask"], json!("phone"));
    assert_eq!(agency["datasets"][0]["publishers"][0]["id"], json!("pub"));
    assert_eq!(
        agency["datasets"][0]["publishers"][0]["focal_officer"]["name"],
        json!("Đầu mối pub")
    );
    let (_, publisher) = get(s.addr, PUBLISHER, "/api/v1/datasets").await;
    assert_eq!(publisher["datasets"].as_array().unwrap().len(), 2);
    assert!(
        publisher["datasets"][0]["columns"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c.get("mask").is_none())
    );

    assert_eq!(
        get(s.addr, AGENCY, "/api/v1/datasets/people/quarantine")
            .await
            .0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        get(s.addr, AGENCY, "/api/v1/datasets/secret/quarantine")
            .await
            .0,
        StatusCode::NOT_FOUND
    );
    let (status, q) = get(s.addr, PUBLISHER, "/api/v1/datasets/people/quarantine").await;
    assert_eq!((status, q["count"].clone()), (StatusCode::OK, json!(1)));
    assert_eq!(
        get(s.addr, ADMIN, "/api/v1/datasets/secret/quarantine")
            .await
            .0,
        StatusCode::NOT_FOUND,
        "special: admin too needs a share"
    );
    assert_eq!(
        get(s.addr, ADMIN, "/api/v1/datasets/people/quarantine")
            .await
            .0,
        StatusCode::OK
    );
}

#[tokio::test]
async fn special_request_filed_approved_used_and_expired() {
    let s = setup("").await;
    let request = json!({
        "name": "secret_a",
        "purpose": "Theo dõi phản ánh của xã A",
        "legal_basis": "Quyết định số 01/QĐ-UBND",
        "dataset": "secret",
        "columns": ["id", "name", "commune"],
        "row_filter": "commune = 'A'",
        "end_date": "2026-12-05"
    });
    let (status, filed) = post(s.addr, AGENCY, "/api/v1/share-requests", request.clone()).await;
    assert_eq!(status, StatusCode::CREATED, "{filed}");
    let id = filed["request"]["id"].as_str().unwrap().to_string();
    assert_eq!(filed["request"]["status"], json!("pending"));
    assert_eq!(
        filed["request"]["decision_due"],
        json!("2026-12-02"),
        "two working days after Monday"
    );
    assert_eq!(
        post(s.addr, AGENCY, "/api/v1/share-requests", request)
            .await
            .0,
        StatusCode::CONFLICT
    );
    assert_eq!(
        sql(s.addr, AGENCY, "SELECT * FROM share.secret_a").await.0,
        StatusCode::BAD_REQUEST,
        "not before approval"
    );

    // Only the managing office decides; a refusal needs reasons.
    assert_eq!(
        post(
            s.addr,
            AGENCY,
            &format!("/api/v1/share-requests/{id}/approve"),
            json!({})
        )
        .await
        .0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        post(
            s.addr,
            ADMIN,
            &format!("/api/v1/share-requests/{id}/reject"),
            json!({})
        )
        .await
        .0,
        StatusCode::BAD_REQUEST
    );
    let (_, listed) = get(s.addr, ADMIN, "/api/v1/share-requests").await;
    assert_eq!(listed["requests"][0]["overdue"], json!(false));
    let (status, approved) = post(
        s.addr,
        ADMIN,
        &format!("/api/v1/share-requests/{id}/approve"),
        json!({"note": "Đồng ý"}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{approved}");
    assert_eq!(approved["request"]["active"], json!(true));

    let (status, rows) = sql(
        s.addr,
        AGENCY,
        "SELECT id, name FROM share.secret_a ORDER BY id",
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{rows}");
    assert_eq!(
        rows["rows"],
        json!([["r1", "Nguyễn Văn An"], ["r3", "Lê Hoàng Cường"]]),
        "its rows, unmasked"
    );
    let (status, _) = sql(s.addr, AGENCY, "SELECT phone FROM share.secret_a").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "only the granted columns");
    assert_eq!(
        sql(s.addr, PROVINCE, "SELECT * FROM share.secret_a")
            .await
            .0,
        StatusCode::BAD_REQUEST,
        "only its consumer"
    );
    let (_, catalog) = get(s.addr, AGENCY, "/api/v1/datasets").await;
    assert_eq!(catalog["shares"][0]["name"], json!("secret_a"));

    // A cast error must not quote a value from a row outside the grant's filter.
    let (status, err) = sql(
        s.addr,
        AGENCY,
        "SELECT id FROM share.secret_a WHERE CAST(name AS INT) > 0",
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let message = err["error"]["message"].as_str().unwrap();
    assert!(
        !message.contains("Trần Thị Bình") && !message.contains("Nguyễn"),
        "{message}"
    );

    // The end date passes: the view is gone, the request says expired, all audited.
    s.clock.advance(chrono::Duration::days(6));
    assert_eq!(
        sql(s.addr, AGENCY, "SELECT * FROM share.secret_a").await.0,
        StatusCode::BAD_REQUEST
    );
    let (_, mine) = get(s.addr, AGENCY, "/api/v1/share-requests").await;
    assert_eq!(mine["requests"][0]["status"], json!("expired"));
    let (_, audit) = get(s.addr, ADMIN, "/api/v1/audit?limit=500").await;
    let actions: Vec<&str> = audit["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    for a in ["share_filed", "share_approved", "share_expired", "query"] {
        assert!(actions.contains(&a), "{a} not audited: {actions:?}");
    }
    let (_, own) = get(s.addr, ADMIN, "/api/v1/audit?consumer=agency&action=query").await;
    assert!(
        own["events"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["consumer"] == "agency" && e["action"] == "query")
    );
    assert!(own["events"][0]["detail"]["sql"].is_string());
    let (_, in_sql) = sql(
        s.addr,
        ADMIN,
        "SELECT count(*) FROM audit WHERE action = 'share_approved'",
    )
    .await;
    assert_eq!(in_sql["rows"], json!([[1]]));
}

#[tokio::test]
async fn undecided_requests_are_flagged_after_two_working_days_and_can_be_revoked() {
    let s = setup("").await;
    let body = json!({"name": "sum_by_commune", "purpose": "Thống kê", "legal_basis": "Kế hoạch 12/KH-UBND",
        "sql": "SELECT commune, sum(n) AS total FROM secret GROUP BY commune", "end_date": "2027-01-31"});
    let (status, filed) = post(s.addr, PROVINCE, "/api/v1/share-requests", body).await;
    assert_eq!(status, StatusCode::CREATED, "{filed}");
    let id = filed["request"]["id"].as_str().unwrap().to_string();
    s.clock.advance(chrono::Duration::days(3)); // Thursday: past Wednesday's deadline
    let (_, listed) = get(s.addr, ADMIN, "/api/v1/share-requests").await;
    assert_eq!(listed["requests"][0]["overdue"], json!(true));
    let metrics = reqwest::get(format!("http://{}/metrics", s.addr))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("iochub_share_requests_overdue 1"),
        "{metrics}"
    );
    post(
        s.addr,
        ADMIN,
        &format!("/api/v1/share-requests/{id}/approve"),
        json!({}),
    )
    .await;
    let (_, rows) = sql(
        s.addr,
        PROVINCE,
        "SELECT * FROM share.sum_by_commune ORDER BY commune",
    )
    .await;
    assert_eq!(rows["rows"], json!([["A", 4], ["B", 2]]));
    let (status, _) = post(
        s.addr,
        ADMIN,
        &format!("/api/v1/share-requests/{id}/revoke"),
        json!({"note": "hết nhu cầu"}),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        sql(s.addr, PROVINCE, "SELECT * FROM share.sum_by_commune")
            .await
            .0,
        StatusCode::BAD_REQUEST
    );
    // A request whose SQL does not compile is refused when filed.
    let bad = json!({"name": "broken", "purpose": "x", "legal_basis": "y", "sql": "SELECT nope FROM secret", "end_date": "2027-01-31"});
    assert_eq!(
        post(s.addr, PROVINCE, "/api/v1/share-requests", bad)
            .await
            .0,
        StatusCode::BAD_REQUEST
    );
}

#[tokio::test]
async fn unauthenticated_forbidden_and_rate_limited_answers() {
    let s = setup("\n[auth]\nrequests_per_minute = 1\nburst = 3\n").await;
    let anonymous = reqwest::Client::new()
        .get(format!("http://{}/api/v1/datasets", s.addr))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        anonymous.headers()["www-authenticate"],
        "Bearer realm=\"iochub\""
    );
    let body: Value = anonymous.json().await.unwrap();
    assert_eq!(body["error"]["code"], json!("unauthorized"));
    let (status, body) = get(s.addr, "not-a-token", "/api/v1/datasets").await;
    assert_eq!(
        (status, body["error"]["code"].clone()),
        (StatusCode::UNAUTHORIZED, json!("unauthorized"))
    );
    let (status, body) = get(s.addr, AGENCY, "/api/v1/audit").await;
    assert_eq!(
        (status, body["error"]["code"].clone()),
        (StatusCode::FORBIDDEN, json!("forbidden"))
    );
    get(s.addr, AGENCY, "/api/v1/datasets").await;
    get(s.addr, AGENCY, "/api/v1/datasets").await;
    let limited = client_with(AGENCY)
        .get(format!("http://{}/api/v1/datasets", s.addr))
        .send()
        .await
        .unwrap();
    assert_eq!(limited.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(
        limited.headers()["retry-after"]
            .to_str()
            .unwrap()
            .parse::<u64>()
            .unwrap()
            >= 1
    );
    let (status, _) = get(s.addr, PROVINCE, "/api/v1/datasets").await;
    assert_eq!(status, StatusCode::OK, "the limit is per consumer");
    let (_, audit) = get(s.addr, ADMIN, "/api/v1/audit?action=auth_failed").await;
    assert_eq!(audit["count"], json!(2));
}

#[tokio::test]
async fn a_publisher_pushes_mixed_csv_and_resending_is_idempotent() {
    let s = setup("").await;
    let csv = "\u{feff}id,commune,name,phone,n\np9,B,Đặng Thị Ánh,0903111222,4\np10,B,Bùi Văn Lộc,12345,5\np11,A,Phan Thị Yến,0903333444,N/A\n";
    let push = |token: &'static str, body: &'static str, content_type: &'static str| {
        let addr = s.addr;
        async move {
            let r = client_with(token)
                .post(format!("http://{addr}/api/v1/datasets/people/records"))
                .header("content-type", content_type)
                .body(body)
                .send()
                .await
                .unwrap();
            (r.status(), r.json::<Value>().await.unwrap())
        }
    };
    let csv: &'static str = Box::leak(csv.to_string().into_boxed_str());
    let (status, report) = push(PUBLISHER, csv, "text/csv; charset=utf-8").await;
    assert_eq!(status, StatusCode::OK, "{report}");
    assert_eq!(report["accepted"], json!(1));
    let rejected: Vec<u64> = report["rejected"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["index"].as_u64().unwrap())
        .collect();
    assert_eq!(rejected, [1, 2]);
    assert_eq!(
        report["rejected"][0]["errors"][0]["pointer"],
        json!("/phone")
    );
    let (_, again) = push(PUBLISHER, csv, "text/csv").await;
    assert_eq!(again["accepted"], json!(1));
    let (_, rows) = sql(
        s.addr,
        PUBLISHER,
        "SELECT id, name FROM people WHERE commune = 'B' ORDER BY id",
    )
    .await;
    assert_eq!(
        rows["rows"],
        json!([["p9", "Đặng Thị Ánh"], ["r2", "Trần Thị Bình"]]),
        "stored once, text intact"
    );
    let (_, q) = sql(
        s.addr,
        PUBLISHER,
        "SELECT count(*) FROM quarantine WHERE source = 'publish:pub'",
    )
    .await;
    assert_eq!(q["rows"], json!([[4]]), "both sends' rejects are kept");

    let ndjson = "{\"id\": \"p12\", \"commune\": \"A\", \"n\": 1}\n{\"id\": \n";
    let (_, nd) = push(PUBLISHER, ndjson, "application/x-ndjson").await;
    assert_eq!(
        (nd["accepted"].clone(), nd["rejected"][0]["index"].clone()),
        (json!(1), json!(1))
    );
    assert_eq!(push(AGENCY, csv, "text/csv").await.0, StatusCode::FORBIDDEN);
    let (_, audit) = get(s.addr, ADMIN, "/api/v1/audit?action=publish").await;
    assert_eq!(audit["count"], json!(3), "every accepted push is audited");
    assert_eq!(audit["events"][2]["detail"]["rejected"], json!(2));
    assert_eq!(
        push(PUBLISHER, "<xml/>", "application/xml").await.0,
        StatusCode::UNSUPPORTED_MEDIA_TYPE
    );
    assert_eq!(
        push(PUBLISHER, "{\"id\": 1}", "application/json").await.0,
        StatusCode::BAD_REQUEST,
        "an object is not an array"
    );
}

#[tokio::test]
async fn errors_and_explain_do_not_reveal_masked_values() {
    let s = setup("").await;
    let (status, err) = sql(s.addr, AGENCY, "SELECT CAST(phone AS BIGINT) FROM people").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(!err.to_string().contains("0912345678"), "{err}");
    let (status, plan) = sql(s.addr, AGENCY, "EXPLAIN SELECT * FROM people").await;
    assert_eq!(status, StatusCode::OK);
    let text = plan.to_string();
    assert!(
        !text.contains("0912345678") && !text.contains("Nguyễn"),
        "{text}"
    );
    assert!(
        text.contains("mask_phone"),
        "the plan shows the mask, not the data"
    );
}
