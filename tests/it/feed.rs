//! The feed: change numbering, the pull API, and push delivery to a real receiver that
//! verifies Standard Webhooks signatures (through the reference library and by hand).

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use base64::Engine;
use iochub::Hub;
use iochub::config::{self, Overrides};
use serde_json::{Value, json};

use crate::common::{self, ADMIN, AGENCY, PUBLISHER, TestHub, client_with};

/// The example secret of the Standard Webhooks specification.
const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// A hub with a keyed dataset `people` (phone is personal data) filled from `inbox/`.
fn people_hub() -> TestHub {
    hub_of_people("people", "Người", "key = [\"id\"]\n")
}

/// A hub with one dataset `name` of people records (`key` is the pipeline's key line, or
/// empty for none) filled from `inbox/`, published by `pub`.
fn hub_of_people(name: &str, title: &str, key: &str) -> TestHub {
    let hub = TestHub::new();
    hub.write("schemas/people.schema.json", common::PEOPLE_SCHEMA);
    std::fs::write(
        hub.path().join(format!("pipelines/{name}.toml")),
        format!(
            "name = \"{name}\"\ntitle = \"{title}\"\nsector = \"test\"\n\
             schema = \"../schemas/people.schema.json\"\n{key}sharing = \"default\"\n\
             publishers = [\"pub\"]\nschedule = \"0 0 * * * *\"\n\n[source]\n{}\n",
            common::JSONL_INBOX
        ),
    )
    .unwrap();
    hub
}

fn people(from: usize, to: usize) -> String {
    (from..=to)
        .map(|i| {
            json!({"id": format!("p{i}"), "n": i, "name": format!("Nguyễn Văn {i}"), "phone": format!("09123456{:02}", i % 100)})
                .to_string()
                + "\n"
        })
        .collect()
}

/// Opens the hub with the subscriptions' secret set (as `secret_env` would at start).
async fn open_with_secret(hub: &TestHub) -> Arc<Hub> {
    let mut config = config::load(&hub.config_path(), &Overrides::default())
        .unwrap_or_else(|e| panic!("config should load: {e}"));
    for s in &mut config.subscriptions {
        s.secret = Some(SECRET.to_string());
    }
    Hub::open(config).await.expect("hub opens")
}

fn subscription(id: &str, consumer: &str, url: &str, extra: &str) -> String {
    format!(
        "\n[[subscriptions]]\nid = \"{id}\"\nconsumer = \"{consumer}\"\nurl = \"{url}\"\n\
         datasets = [\"people\"]\nsecret_env = \"IOCHUB_TEST_FEED_SECRET\"\nbatch_size = 4\n\
         max_batch_delay = \"50ms\"\nmax_backoff = \"1s\"\n{extra}\n"
    )
}

// ---------------------------------------------------------------- the receiver

#[derive(Debug, Clone)]
struct Received {
    webhook_id: String,
    events: Vec<Value>,
}

#[derive(Default)]
struct Receiver {
    /// What to answer; 200 unless a test says otherwise.
    status: AtomicU16,
    /// Batches answered 2xx.
    accepted: Mutex<Vec<Received>>,
    /// Every request's webhook-id, whatever the answer.
    attempts: Mutex<Vec<String>>,
    bad_signatures: Mutex<Vec<String>>,
    /// Answer the next this-many requests with 500.
    fail_next: AtomicU16,
}

impl Receiver {
    fn new() -> Arc<Self> {
        let r = Receiver::default();
        r.status.store(200, Ordering::SeqCst);
        Arc::new(r)
    }

    fn sequences(&self) -> Vec<i64> {
        self.accepted
            .lock()
            .unwrap()
            .iter()
            .flat_map(|b| b.events.iter())
            .map(|e| e["sequence"].as_str().unwrap().parse().unwrap())
            .collect()
    }

    fn events(&self) -> Vec<Value> {
        self.accepted
            .lock()
            .unwrap()
            .iter()
            .flat_map(|b| b.events.clone())
            .collect()
    }
}

/// HMAC-SHA256 written out from RFC 2104, independent of the hub's signing code.
fn hmac_sha256(key: &[u8], message: &[u8]) -> Vec<u8> {
    use sha2::{Digest, Sha256};
    let mut block = [0u8; 64];
    if key.len() > 64 {
        block[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let mut inner = Sha256::new();
    inner.update(block.map(|b| b ^ 0x36));
    inner.update(message);
    let inner = inner.finalize();
    let mut outer = Sha256::new();
    outer.update(block.map(|b| b ^ 0x5c));
    outer.update(inner);
    outer.finalize().to_vec()
}

fn verify_by_hand(headers: &HeaderMap, body: &[u8]) -> Result<(), String> {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .ok_or(format!("no {name}"))
    };
    let (id, timestamp, signature) = (
        header("webhook-id")?,
        header("webhook-timestamp")?,
        header("webhook-signature")?,
    );
    let key = base64::engine::general_purpose::STANDARD
        .decode(SECRET.trim_start_matches("whsec_"))
        .map_err(|e| e.to_string())?;
    let mut signed = format!("{id}.{timestamp}.").into_bytes();
    signed.extend_from_slice(body);
    let expected = format!(
        "v1,{}",
        base64::engine::general_purpose::STANDARD.encode(hmac_sha256(&key, &signed))
    );
    if signature.split(' ').any(|s| s == expected) {
        Ok(())
    } else {
        Err(format!("signature {signature} is not {expected}"))
    }
}

async fn receive(State(r): State<Arc<Receiver>>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let id = headers
        .get("webhook-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    r.attempts.lock().unwrap().push(id.clone());
    let library = standardwebhooks::Webhook::new(SECRET)
        .unwrap()
        .verify(&body, &headers);
    if let Err(e) = library
        .map_err(|e| e.to_string())
        .and(verify_by_hand(&headers, &body))
    {
        r.bad_signatures.lock().unwrap().push(e);
        return StatusCode::UNAUTHORIZED;
    }
    assert_eq!(
        headers.get("content-type").unwrap(),
        "application/cloudevents-batch+json"
    );
    if r.fail_next
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok()
    {
        return StatusCode::INTERNAL_SERVER_ERROR;
    }
    let status = StatusCode::from_u16(r.status.load(Ordering::SeqCst)).unwrap();
    if status.is_success() {
        let events: Vec<Value> = serde_json::from_slice(&body).expect("a JSON array");
        r.accepted.lock().unwrap().push(Received {
            webhook_id: id,
            events,
        });
    }
    status
}

async fn start_receiver_on(listener: tokio::net::TcpListener, r: Arc<Receiver>) {
    let app = axum::Router::new()
        .route("/hook", axum::routing::post(receive))
        .with_state(r);
    tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
}

async fn start_receiver(r: Arc<Receiver>) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    start_receiver_on(listener, r).await;
    addr
}

async fn wait_for(what: &str, seconds: u64, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(seconds);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Every sequence 1..=n arrived, and each batch's sequences were in order (a repeat of a
/// batch is allowed: at least once).
fn assert_complete_and_ordered(r: &Receiver, n: i64) {
    let seqs = r.sequences();
    let unique: BTreeSet<i64> = seqs.iter().copied().collect();
    assert_eq!(unique, (1..=n).collect::<BTreeSet<_>>(), "got {seqs:?}");
    let mut highest = 0;
    for batch in r.accepted.lock().unwrap().iter() {
        let batch_seqs: Vec<i64> = batch
            .events
            .iter()
            .map(|e| e["sequence"].as_str().unwrap().parse().unwrap())
            .collect();
        assert!(batch_seqs.windows(2).all(|w| w[0] < w[1]), "{batch_seqs:?}");
        // A new batch starts after the previous one, or repeats it.
        assert!(batch_seqs[0] <= highest + 1, "gap before {batch_seqs:?}");
        highest = highest.max(*batch_seqs.last().unwrap());
    }
}

// ---------------------------------------------------------------- the change log

#[tokio::test]
async fn every_upsert_and_delete_gets_the_next_sequence_and_survives_a_lost_log() {
    let t = people_hub();
    t.write("inbox/a.jsonl", people(1, 3));
    let hub = t.open().await;
    hub.run("people", "test").await.unwrap();
    // p2 changes: the feed keeps both versions (history), not only the latest row.
    t.write(
        "inbox/b.jsonl",
        json!({"id": "p2", "n": 20, "name": "Trần Thị Hai"}).to_string() + "\n",
    );
    hub.run("people", "test").await.unwrap();
    let addr = common::serve(hub.clone()).await;
    let publisher = client_with(PUBLISHER);
    let deleted: Value = publisher
        .delete(format!("http://{addr}/api/v1/datasets/people/records"))
        .json(&json!({"keys": [{"id": "p1"}]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(deleted["deleted"], 1, "{deleted}");
    assert_eq!(common::count(&hub, "SELECT count(*) FROM people").await, 2);

    let admin = client_with(ADMIN);
    let page = common::get_json(&admin, format!("http://{addr}/api/v1/feed/people?after=0")).await;
    let events = page["events"].as_array().unwrap();
    let summary: Vec<(String, String, String)> = events
        .iter()
        .map(|e| {
            (
                e["sequence"].as_str().unwrap().to_string(),
                e["subject"].as_str().unwrap().to_string(),
                e["type"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let up = "vn.ioc.record.upserted".to_string();
    let mut first_three: Vec<_> = summary[..3].iter().map(|s| s.1.clone()).collect();
    first_three.sort();
    assert_eq!(first_three, ["p1", "p2", "p3"]);
    assert_eq!(summary[3], ("4".into(), "p2".into(), up.clone()));
    assert_eq!(
        summary[4],
        ("5".into(), "p1".into(), "vn.ioc.record.deleted".into())
    );
    assert_eq!(page["next"], 5);
    assert_eq!(page["last_sequence"], 5);
    let e = &events[3];
    assert_eq!(e["specversion"], "1.0");
    assert_eq!(e["id"], "people:4");
    assert_eq!(e["source"], "iochub://test/people");
    assert_eq!(e["datacontenttype"], "application/json");
    assert_eq!(e["data"]["name"], "Trần Thị Hai");
    assert_eq!(e["data"]["n"], 20);
    assert!(e["time"].as_str().unwrap().ends_with('Z'));
    assert_eq!(events[4]["data"], json!({"id": "p1"}));

    // Paging: two at a time, and the position moves on.
    let page = common::get_json(
        &admin,
        format!("http://{addr}/api/v1/feed/people?after=2&limit=2"),
    )
    .await;
    let seqs: Vec<&str> = page["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["sequence"].as_str().unwrap())
        .collect();
    assert_eq!(seqs, ["3", "4"]);
    assert_eq!(page["next"], 4);
    drop(hub);

    // The log is derived from the table's commits: lose it, and the next start rebuilds
    // the same numbering (including the old version of p2, by time travel).
    std::fs::remove_dir_all(t.path().join("data/changes/people")).unwrap();
    let hub = t.open().await;
    assert_eq!(hub.feed.changelog.last_seq("people"), 5);
    let consumer = hub.config.consumers.get("admin").unwrap().clone();
    let page = hub.feed_read(&consumer, "people", 0, 100).await.unwrap();
    let rebuilt: Vec<i64> = page.events.iter().map(|e| e.seq).collect();
    assert_eq!(rebuilt, [1, 2, 3, 4, 5]);
    assert!(page.events[3].json.contains("Trần Thị Hai"));
    assert!(page.events[4].json.contains("vn.ioc.record.deleted"));
}

/// The rows of the Delta table at `path`, counted by `_op`.
async fn log_rows_by_op(path: &std::path::Path) -> Vec<(String, i64)> {
    let url = deltalake::ensure_table_uri(path.to_string_lossy()).unwrap();
    let table = deltalake::DeltaTable::try_from_url(url).await.unwrap();
    let ctx = datafusion::prelude::SessionContext::new();
    ctx.register_table("log", table.table_provider().await.unwrap())
        .unwrap();
    let batches = ctx
        .sql("SELECT CAST(_op AS VARCHAR), count(*) FROM log GROUP BY 1 ORDER BY 1")
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    let mut out = Vec::new();
    for b in &batches {
        let ops = arrow::compute::cast(b.column(0), &arrow::datatypes::DataType::Utf8).unwrap();
        let ops = ops
            .as_any()
            .downcast_ref::<arrow::array::StringArray>()
            .unwrap();
        let n = b
            .column(1)
            .as_any()
            .downcast_ref::<arrow::array::Int64Array>()
            .unwrap();
        for i in 0..b.num_rows() {
            out.push((ops.value(i).to_string(), n.value(i)));
        }
    }
    out
}

/// Every page of `target`'s feed as `consumer` reads it, `limit` at a time: (seq, id, phone).
async fn read_all(
    hub: &Hub,
    consumer: &str,
    target: &str,
    limit: usize,
) -> Vec<(i64, String, String)> {
    let consumer = hub.config.consumers.get(consumer).unwrap().clone();
    let mut out = Vec::new();
    let mut after = 0;
    loop {
        let page = hub
            .feed_read(&consumer, target, after, limit)
            .await
            .unwrap();
        assert!(page.events.len() <= limit);
        for e in &page.events {
            let v: Value = serde_json::from_str(&e.json).unwrap();
            assert_eq!(v["type"], "vn.ioc.record.upserted", "{v}");
            out.push((
                e.seq,
                v["data"]["id"].as_str().unwrap().to_string(),
                v["data"]["phone"].as_str().unwrap_or("").to_string(),
            ));
        }
        if page.next == after {
            break;
        }
        after = page.next;
    }
    out
}

#[tokio::test]
async fn appends_are_fed_from_their_own_files_page_by_page_masked_and_after_a_restart() {
    let t = hub_of_people("visits", "Lượt", "");
    t.write("inbox/a.jsonl", people(1, 5));
    let hub = t.open().await;
    hub.run("visits", "test").await.unwrap();
    t.write("inbox/b.jsonl", people(6, 9));
    hub.run("visits", "test").await.unwrap();
    assert_eq!(hub.feed.changelog.last_seq("visits"), 9);

    // The log holds one row per appended file, not the rows again.
    let log = t.path().join("data/changes/visits");
    assert_eq!(log_rows_by_op(&log).await, [("appended".to_string(), 2)]);

    // The publisher sees its data unmasked. Pages of two cross the first file's end (5 | 6)
    // and start inside files.
    let publisher = read_all(&hub, "pub", "visits", 2).await;
    let seqs: Vec<i64> = publisher.iter().map(|r| r.0).collect();
    assert_eq!(seqs, (1..=9).collect::<Vec<_>>());
    let mut ids: Vec<&str> = publisher.iter().map(|r| r.1.as_str()).collect();
    let first_run: BTreeSet<&str> = ids[..5].iter().copied().collect();
    assert_eq!(first_run, BTreeSet::from(["p1", "p2", "p3", "p4", "p5"]));
    ids.sort();
    let mut expected: Vec<String> = (1..=9).map(|i| format!("p{i}")).collect();
    expected.sort();
    assert_eq!(ids, expected);
    assert!(
        publisher.iter().all(|r| r.2.starts_with("091234")),
        "{publisher:?}"
    );
    // Any page size gives the same numbering.
    assert_eq!(read_all(&hub, "pub", "visits", 100).await, publisher);
    assert_eq!(read_all(&hub, "pub", "visits", 1).await, publisher);

    // An agency without a grant reads the same changes, personal data masked.
    let agency = read_all(&hub, "agency", "visits", 3).await;
    assert_eq!(agency.len(), 9);
    for (masked, clear) in agency.iter().zip(&publisher) {
        assert_eq!((masked.0, &masked.1), (clear.0, &clear.1));
        assert!(masked.2.contains("****"), "{masked:?}");
    }
    drop(hub);

    // After a restart the file index is read back from the log.
    let hub = t.open().await;
    assert_eq!(hub.feed.changelog.last_seq("visits"), 9);
    assert_eq!(read_all(&hub, "pub", "visits", 4).await, publisher);
    drop(hub);

    // Lost, the log is rebuilt from the table's commits with the same numbering.
    std::fs::remove_dir_all(&log).unwrap();
    let hub = t.open().await;
    assert_eq!(hub.feed.changelog.last_seq("visits"), 9);
    assert_eq!(read_all(&hub, "pub", "visits", 4).await, publisher);
}

#[tokio::test]
async fn the_pull_feed_has_the_same_rights_as_sql() {
    let t = people_hub();
    t.write("inbox/a.jsonl", people(1, 2));
    let hub = t.open().await;
    hub.run("people", "test").await.unwrap();
    let addr = common::serve(hub.clone()).await;
    let agency = client_with(AGENCY);
    let page = common::get_json(&agency, format!("http://{addr}/api/v1/feed/people")).await;
    let phones: Vec<&str> = page["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["data"]["phone"].as_str().unwrap())
        .collect();
    assert_eq!(phones, ["091****601", "091****602"]);
    let response = agency
        .get(format!("http://{addr}/api/v1/feed/quarantine"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
    let response = agency
        .get(format!("http://{addr}/api/v1/feed/people?limit=0"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let response = reqwest::Client::new()
        .get(format!("http://{addr}/api/v1/feed/people"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    // A publisher may delete only in its own dataset, and only by the whole key.
    let response = agency
        .delete(format!("http://{addr}/api/v1/datasets/people/records"))
        .json(&json!({"keys": [{"id": "p1"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403);
    let response = client_with(PUBLISHER)
        .delete(format!("http://{addr}/api/v1/datasets/people/records"))
        .json(&json!({"keys": [{"name": "x"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let audit = hub
        .audit_log(&iochub::state::AuditFilter {
            action: Some("feed.read".into()),
            limit: 10,
            ..Default::default()
        })
        .unwrap();
    assert!(!audit.is_empty(), "feed reads are audited");
}

#[tokio::test]
async fn a_share_feed_keeps_to_its_rows_and_columns_deletes_included() {
    let t = people_hub();
    std::fs::create_dir_all(t.path().join("grants")).unwrap();
    let grant = |name: &str, rest: &str| {
        format!(
            "name = \"{name}\"\nconsumer = \"province\"\npurpose = \"Thử nghiệm\"\n\
             legal_basis = \"Thử nghiệm\"\ndataset = \"people\"\nend_date = \"2099-12-31\"\n{rest}\n"
        )
    };
    t.write(
        "grants/people_big.toml",
        grant(
            "people_big",
            "columns = [\"id\", \"n\", \"phone\"]\nrow_filter = \"n >= 2\"",
        ),
    );
    t.write(
        "grants/people_nokey.toml",
        grant("people_nokey", "columns = [\"n\"]"),
    );
    t.write("inbox/a.jsonl", people(1, 3));
    let hub = t.open().await;
    hub.run("people", "test").await.unwrap();
    let addr = common::serve(hub.clone()).await;
    let deleted: Value = client_with(PUBLISHER)
        .delete(format!("http://{addr}/api/v1/datasets/people/records"))
        .json(&json!({"keys": [{"id": "p1"}, {"id": "p2"}, {"id": "never-was"}]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(deleted["deleted"], 2, "{deleted}");
    let province = client_with(common::PROVINCE);
    let page = common::get_json(
        &province,
        format!("http://{addr}/api/v1/feed/share.people_big"),
    )
    .await;
    let events: Vec<(String, String, Value)> = page["events"]
        .as_array()
        .unwrap_or_else(|| panic!("{page}"))
        .iter()
        .map(|e| {
            (
                e["subject"].as_str().unwrap().to_string(),
                e["type"].as_str().unwrap().to_string(),
                e["data"].clone(),
            )
        })
        .collect();
    let mut upserts: Vec<_> = events
        .iter()
        .filter(|e| e.1.ends_with("upserted"))
        .map(|e| e.0.clone())
        .collect();
    upserts.sort();
    assert_eq!(upserts, ["p2", "p3"], "the row filter applies: {events:?}");
    let deletes: Vec<_> = events.iter().filter(|e| e.1.ends_with("deleted")).collect();
    assert_eq!(
        deletes.len(),
        1,
        "only p2's delete is in the share: {events:?}"
    );
    assert_eq!(deletes[0].0, "p2");
    assert_eq!(deletes[0].2, json!({"id": "p2"}));
    // The share's columns, unmasked (the grant covers them), and nothing else.
    let data = &events.iter().find(|e| e.0 == "p3").unwrap().2;
    assert_eq!(data, &json!({"id": "p3", "n": 3, "phone": "0912345603"}));
    assert_eq!(
        page["last_sequence"], 5,
        "3 upserts and 2 deletes (a key that was not there is no change)"
    );

    let response = province
        .get(format!("http://{addr}/api/v1/feed/share.people_nokey"))
        .send()
        .await
        .unwrap();
    let status = response.status();
    let body: Value = response.json().await.unwrap();
    assert!(status.is_client_error(), "{status} {body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("key column"),
        "{body}"
    );
}

// ---------------------------------------------------------------- delivery

#[tokio::test]
async fn a_receiver_down_for_a_while_then_up_gets_everything_in_order() {
    let t = people_hub();
    // Reserve a port, then close it: the receiver is down.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    t.append_config(&subscription(
        "tinh",
        "province",
        &format!("http://{addr}/hook"),
        "",
    ));
    t.write("inbox/a.jsonl", people(1, 10));
    let hub = open_with_secret(&t).await;
    hub.run("people", "test").await.unwrap();
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let loops = iochub::feed::delivery::start(hub.clone(), stopped);

    // While it is down, the status says why nothing arrives.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let status = hub.subscription_statuses().await.unwrap();
        let target = &status[0].targets[0];
        if target.runtime.last_error.is_some() {
            assert_eq!(target.pending, 10);
            assert_eq!(target.position, 0);
            assert!(target.lag_seconds >= 0.0);
            break;
        }
        assert!(Instant::now() < deadline, "no error recorded");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // More changes while it is down.
    t.write("inbox/b.jsonl", people(11, 13));
    hub.run("people", "test").await.unwrap();

    let receiver = Receiver::new();
    let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
    start_receiver_on(listener, receiver.clone()).await;
    wait_for("all 13 changes", 30, || {
        receiver.sequences().iter().collect::<BTreeSet<_>>().len() == 13
    })
    .await;
    assert_complete_and_ordered(&receiver, 13);
    assert!(receiver.bad_signatures.lock().unwrap().is_empty());
    let e = &receiver.events()[0];
    assert_eq!(e["source"], "iochub://test/people");
    assert_eq!(e["type"], "vn.ioc.record.upserted");

    // The position is persisted after acknowledgement.
    wait_for("the position", 10, || {
        hub.state
            .feed_position("tinh", "people")
            .unwrap()
            .is_some_and(|p| p.position == 13)
    })
    .await;
    let audit = hub
        .audit_log(&iochub::state::AuditFilter {
            action: Some("feed.deliver".into()),
            limit: 1000,
            ..Default::default()
        })
        .unwrap();
    assert!(audit.iter().any(|a| a.outcome == "delivered"));
    assert!(audit.iter().any(|a| a.outcome == "failed"));
    let metrics = hub.metrics_text();
    assert!(
        metrics.contains(
            "iochub_feed_events_delivered_total{subscription=\"tinh\",target=\"people\"}"
        ),
        "{metrics}"
    );
    stop.send(true).unwrap();
    for l in loops {
        l.await.unwrap();
    }
}

/// A people hub with `n` records and province's subscription to `receiver` (with `extra`
/// settings), its delivery loops running until the returned sender says stop.
async fn delivering_people_to(
    receiver: &Arc<Receiver>,
    n: usize,
    extra: &str,
) -> (TestHub, Arc<Hub>, tokio::sync::watch::Sender<bool>) {
    let t = people_hub();
    let addr = start_receiver(receiver.clone()).await;
    t.append_config(&subscription(
        "tinh",
        "province",
        &format!("http://{addr}/hook"),
        extra,
    ));
    t.write("inbox/a.jsonl", people(1, n));
    let hub = open_with_secret(&t).await;
    hub.run("people", "test").await.unwrap();
    let (stop, stopped) = tokio::sync::watch::channel(false);
    iochub::feed::delivery::start(hub.clone(), stopped);
    (t, hub, stop)
}

#[tokio::test]
async fn a_batch_answered_500_is_sent_again_with_the_same_webhook_id() {
    let receiver = Receiver::new();
    receiver.fail_next.store(1, Ordering::SeqCst);
    let (_t, _hub, stop) = delivering_people_to(&receiver, 3, "").await;
    wait_for("the batch", 20, || {
        !receiver.accepted.lock().unwrap().is_empty()
    })
    .await;
    let attempts = receiver.attempts.lock().unwrap().clone();
    assert!(attempts.len() >= 2, "{attempts:?}");
    assert_eq!(attempts[0], attempts[1], "a retry keeps its webhook-id");
    assert_eq!(receiver.accepted.lock().unwrap()[0].webhook_id, attempts[0]);
    assert_complete_and_ordered(&receiver, 3);
    stop.send(true).unwrap();
}

#[tokio::test]
async fn a_receiver_refusing_a_batch_parks_the_subscription_until_an_admin_resumes_it() {
    let receiver = Receiver::new();
    receiver.status.store(400, Ordering::SeqCst);
    let (_t, hub, stop) = delivering_people_to(&receiver, 6, "park_after = \"1s\"").await;
    let api = common::serve(hub.clone()).await;
    let admin = client_with(ADMIN);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let status = common::get_json(&admin, format!("http://{api}/api/v1/subscriptions")).await;
        let target = &status["subscriptions"][0]["targets"][0];
        if target["parked"] == true {
            assert_eq!(target["position"], 0);
            assert_eq!(target["pending"], 6);
            assert!(
                target["parked_reason"].as_str().unwrap().contains("400"),
                "{target}"
            );
            break;
        }
        assert!(Instant::now() < deadline, "never parked: {status}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let metrics = hub.metrics_text();
    assert!(
        metrics.contains("iochub_feed_parked{subscription=\"tinh\",target=\"people\"} 1"),
        "{metrics}"
    );
    // Parked means waiting, not dropping: nothing is sent, nothing is lost.
    let attempts = receiver.attempts.lock().unwrap().len();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(receiver.attempts.lock().unwrap().len(), attempts);
    assert_eq!(
        client_with(AGENCY)
            .get(format!("http://{api}/api/v1/subscriptions"))
            .send()
            .await
            .unwrap()
            .status(),
        403
    );

    receiver.status.store(200, Ordering::SeqCst);
    let resumed: Value = admin
        .post(format!("http://{api}/api/v1/subscriptions/tinh/resume"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(resumed["resumed_targets"], 1, "{resumed}");
    wait_for("delivery after resume", 20, || {
        receiver.sequences().len() >= 6
    })
    .await;
    assert_complete_and_ordered(&receiver, 6);
    stop.send(true).unwrap();
}

#[tokio::test]
async fn personal_data_is_masked_in_the_feed_of_a_subscriber_without_a_grant() {
    let t = people_hub();
    let receiver = Receiver::new();
    let addr = start_receiver(receiver.clone()).await;
    t.append_config(&subscription(
        "agency",
        "agency",
        &format!("http://{addr}/hook"),
        "",
    ));
    t.append_config(&subscription(
        "owner",
        "pub",
        &format!("http://{addr}/hook"),
        "",
    ));
    t.write("inbox/a.jsonl", people(1, 2));
    let hub = open_with_secret(&t).await;
    hub.run("people", "test").await.unwrap();
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let _loops = iochub::feed::delivery::start(hub.clone(), stopped);
    wait_for("both subscriptions", 20, || receiver.sequences().len() >= 4).await;
    let mut phones: Vec<String> = receiver
        .events()
        .iter()
        .map(|e| e["data"]["phone"].as_str().unwrap().to_string())
        .collect();
    phones.sort();
    // The publisher sees its own data; the agency sees it masked.
    assert_eq!(
        phones,
        ["091****601", "091****602", "0912345601", "0912345602"]
    );
    stop.send(true).unwrap();
}

#[test]
fn a_hub_killed_mid_batch_resumes_from_its_last_acknowledged_position() {
    use std::process::{Command, Stdio};
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let t = people_hub();
    let receiver = Receiver::new();
    // The receiver holds its answers back: the hub is killed while a batch is in flight.
    receiver.fail_next.store(u16::MAX, Ordering::SeqCst);
    let addr = runtime.block_on(start_receiver(receiver.clone()));
    // One batch holds all nine changes, with room to spare: a partial batch.
    t.append_config(
        &subscription("tinh", "province", &format!("http://{addr}/hook"), "")
            .replace("batch_size = 4", "batch_size = 20"),
    );
    t.write("inbox/a.jsonl", people(1, 9));
    runtime.block_on(async {
        let hub = open_with_secret(&t).await;
        hub.run("people", "test").await.unwrap();
    });
    let start = || {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        Command::new(env!("CARGO_BIN_EXE_iochub"))
            .args(["serve", "--config"])
            .arg(t.config_path())
            .args(["--http-addr", &format!("127.0.0.1:{port}")])
            .env("IOCHUB_TEST_FEED_SECRET", SECRET)
            .env("RUST_LOG", "error")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start iochub serve")
    };
    let mut first = start();
    runtime.block_on(wait_for("a first attempt", 60, || {
        !receiver.attempts.lock().unwrap().is_empty()
    }));
    first.kill().unwrap();
    first.wait().unwrap();
    let first_id = receiver.attempts.lock().unwrap()[0].clone();
    assert!(receiver.accepted.lock().unwrap().is_empty());
    // Three more changes while the hub is down: the batch in flight must not grow.
    t.write("inbox/b.jsonl", people(10, 12));
    runtime.block_on(async {
        let hub = open_with_secret(&t).await;
        hub.run("people", "test").await.unwrap();
    });

    receiver.fail_next.store(0, Ordering::SeqCst);
    let mut second = start();
    runtime.block_on(wait_for("every change after the restart", 60, || {
        receiver.sequences().len() >= 12
    }));
    second.kill().unwrap();
    second.wait().unwrap();
    assert_complete_and_ordered(&receiver, 12);
    // The batch in flight at the kill is sent again as it was, with the same id: a
    // receiver can de-duplicate on it.
    let accepted = receiver.accepted.lock().unwrap();
    assert_eq!(accepted[0].webhook_id, first_id);
    assert_eq!(accepted[0].events.len(), 9);
}

// ---------------------------------------------------------------- brokers

#[tokio::test]
async fn a_subscription_can_publish_to_nats_jetstream() {
    let t = people_hub();
    let unique = format!("t{}", std::process::id());
    t.append_config(&format!(
        "\n[[subscriptions]]\nid = \"nats\"\nconsumer = \"agency\"\ndatasets = [\"people\"]\n\
         max_batch_delay = \"50ms\"\n[subscriptions.nats]\nurl = \"nats://127.0.0.1:4222\"\n\
         stream = \"IOCHUB_TEST_{unique}\"\nsubject_prefix = \"iochub_test_{unique}\"\n"
    ));
    t.write("inbox/a.jsonl", people(1, 5));
    let hub = open_with_secret(&t).await;
    hub.run("people", "test").await.unwrap();
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let _loops = iochub::feed::delivery::start(hub.clone(), stopped);
    wait_for("the NATS position", 30, || {
        hub.state
            .feed_position("nats", "people")
            .unwrap()
            .is_some_and(|p| p.position == 5)
    })
    .await;
    stop.send(true).unwrap();

    let client = async_nats::connect("127.0.0.1:4222").await.unwrap();
    let jetstream = async_nats::jetstream::new(client);
    let stream = jetstream
        .get_stream(format!("IOCHUB_TEST_{unique}"))
        .await
        .unwrap();
    let consumer = stream
        .create_consumer(async_nats::jetstream::consumer::pull::Config {
            durable_name: None,
            ..Default::default()
        })
        .await
        .unwrap();
    use futures::StreamExt;
    let mut messages = consumer.fetch().max_messages(10).messages().await.unwrap();
    let mut seen = Vec::new();
    while let Some(Ok(message)) = messages.next().await {
        assert_eq!(
            message.subject.as_str(),
            format!("iochub_test_{unique}.people")
        );
        let event: Value = serde_json::from_slice(&message.payload).unwrap();
        seen.push((
            event["sequence"].as_str().unwrap().to_string(),
            event["data"]["phone"].as_str().unwrap().to_string(),
        ));
        message.ack().await.unwrap();
    }
    let seqs: Vec<&str> = seen.iter().map(|s| s.0.as_str()).collect();
    assert_eq!(seqs, ["1", "2", "3", "4", "5"]);
    assert!(
        seen.iter().all(|s| s.1.contains("****")),
        "masked for the agency"
    );
    jetstream
        .delete_stream(format!("IOCHUB_TEST_{unique}"))
        .await
        .unwrap();
}

#[tokio::test]
async fn a_subscription_can_publish_to_mqtt() {
    let t = people_hub();
    let prefix = format!("iochub-test-{}", std::process::id());
    t.append_config(&format!(
        "\n[[subscriptions]]\nid = \"mqtt\"\nconsumer = \"agency\"\ndatasets = [\"people\"]\n\
         max_batch_delay = \"50ms\"\n[subscriptions.mqtt]\nhost = \"127.0.0.1\"\nport = 1883\n\
         topic_prefix = \"{prefix}\"\nclient_id = \"{prefix}-hub\"\n"
    ));
    t.write("inbox/a.jsonl", people(1, 5));

    // A subscriber listening before anything is published.
    let mut options = rumqttc::MqttOptions::new(format!("{prefix}-reader"), "127.0.0.1", 1883);
    options.set_max_packet_size(1 << 20, 1 << 20);
    let (client, mut eventloop) = rumqttc::AsyncClient::new(options, 16);
    client
        .subscribe(format!("{prefix}/#"), rumqttc::QoS::AtLeastOnce)
        .await
        .unwrap();
    let got: Arc<Mutex<Vec<(String, Value)>>> = Arc::default();
    let sink = got.clone();
    let (subscribed_tx, subscribed) = tokio::sync::oneshot::channel();
    let mut subscribed_tx = Some(subscribed_tx);
    tokio::spawn(async move {
        while let Ok(event) = eventloop.poll().await {
            match event {
                rumqttc::Event::Incoming(rumqttc::Packet::SubAck(_)) => {
                    if let Some(tx) = subscribed_tx.take() {
                        let _ = tx.send(());
                    }
                }
                rumqttc::Event::Incoming(rumqttc::Packet::Publish(p)) => {
                    let event: Value = serde_json::from_slice(&p.payload).unwrap();
                    sink.lock().unwrap().push((p.topic.clone(), event));
                }
                _ => {}
            }
        }
    });
    tokio::time::timeout(Duration::from_secs(10), subscribed)
        .await
        .expect("subscribed")
        .unwrap();

    let hub = open_with_secret(&t).await;
    hub.run("people", "test").await.unwrap();
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let _loops = iochub::feed::delivery::start(hub.clone(), stopped);
    wait_for("five MQTT messages", 30, || got.lock().unwrap().len() >= 5).await;
    wait_for("the MQTT position", 10, || {
        hub.state
            .feed_position("mqtt", "people")
            .unwrap()
            .is_some_and(|p| p.position == 5)
    })
    .await;
    let got = got.lock().unwrap().clone();
    assert!(
        got.iter()
            .all(|(topic, _)| topic == &format!("{prefix}/people"))
    );
    let seqs: Vec<&str> = got
        .iter()
        .map(|(_, e)| e["sequence"].as_str().unwrap())
        .collect();
    assert_eq!(seqs, ["1", "2", "3", "4", "5"]);
    stop.send(true).unwrap();
}

#[test]
fn subscription_mistakes_are_reported_by_check() {
    let t = people_hub();
    t.append_config(
        "\n[[subscriptions]]\nid = \"bad id\"\nconsumer = \"nobody\"\nurl = \"ftp://x\"\n\
         datasets = [\"nope\"]\nbatch_size = 0\nmax_batch_delay = \"soon\"\n",
    );
    let errors = config::load(&t.config_path(), &Overrides::default())
        .expect_err("must fail")
        .to_string();
    for expected in [
        "id must be a non-empty identifier",
        "consumer \"nobody\"",
        "\"nope\" is not a dataset",
        "batch_size must be between 1",
        "max_batch_delay",
        "is not an http(s) URL",
        "secret_env",
    ] {
        assert!(
            errors.contains(expected),
            "{expected:?} missing in:\n{errors}"
        );
    }
}
