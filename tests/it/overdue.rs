//! `[overdue]`: counts per unit as a metric, and each newly overdue item announced once to a
//! signed webhook, across restarts, retried after a failed POST.

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use serde_json::Value;

use crate::common::{JSONL_INBOX, TestHub};

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

#[derive(Default)]
struct Receiver {
    fail: bool,
    received: Vec<Value>,
}

async fn receiver() -> (String, Arc<Mutex<Receiver>>) {
    let state = Arc::new(Mutex::new(Receiver::default()));
    let shared = state.clone();
    let app = Router::new().route(
        "/hook",
        post(move |headers: HeaderMap, body: String| {
            let shared = shared.clone();
            async move {
                let mut r = shared.lock().unwrap();
                if r.fail {
                    return StatusCode::INTERNAL_SERVER_ERROR;
                }
                let verifier = standardwebhooks::Webhook::new(SECRET).unwrap();
                if verifier.verify(body.as_bytes(), &headers).is_err() {
                    return StatusCode::UNAUTHORIZED;
                }
                r.received.push(serde_json::from_str(&body).unwrap());
                StatusCode::NO_CONTENT
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}/hook"), state)
}

fn ids(body: &Value) -> Vec<String> {
    let mut ids: Vec<String> = body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_str().unwrap().to_string())
        .collect();
    ids.sort();
    ids
}

#[tokio::test]
async fn overdue_items_are_counted_and_announced_once() {
    let (url, received) = receiver().await;
    // Edition 2024 marks set_var unsafe: no other thread of this binary reads this name.
    unsafe { std::env::set_var("IOCHUB_IT_OVERDUE_SECRET", SECRET) };
    let t = TestHub::new();
    t.add_pipeline_with(
        "deadlines",
        &["id"],
        "",
        &format!(
            "{JSONL_INBOX}\n\n[[computed]]\nname = \"state\"\n\
             sql = \"CASE WHEN day < CAST(now() AS DATE) THEN 'quá hạn' ELSE 'trong hạn' END\"\n"
        ),
    );
    t.append_config(&format!(
        "\n[overdue]\nsql = \"SELECT id, name AS unit, day FROM deadlines WHERE state = 'quá hạn'\"\n\
         webhook_url = \"{url}\"\nsecret_env = \"IOCHUB_IT_OVERDUE_SECRET\"\n"
    ));
    t.write(
        "inbox/a.jsonl",
        "{\"id\": \"a\", \"n\": 1, \"name\": \"25363\", \"day\": \"2000-01-01\"}\n\
         {\"id\": \"b\", \"n\": 2, \"name\": \"25363\", \"day\": \"2001-01-01\"}\n\
         {\"id\": \"c\", \"n\": 3, \"name\": \"25366\", \"day\": \"2002-01-01\"}\n\
         {\"id\": \"later\", \"n\": 4, \"name\": \"25366\", \"day\": \"2999-01-01\"}\n",
    );
    let hub = t.open().await;
    hub.run("deadlines", "test").await.unwrap();
    let watch = iochub::overdue::Watch::new(hub.config.file.overdue.clone().unwrap()).unwrap();

    let first = watch.check(&hub).await.unwrap();
    assert_eq!(
        first.by_unit,
        [("25363".to_string(), 2), ("25366".to_string(), 1)].into()
    );
    let mut announced = first.announced.clone();
    announced.sort();
    assert_eq!(announced, ["a", "b", "c"]);
    {
        let r = received.lock().unwrap();
        assert_eq!(r.received.len(), 1, "one signed POST");
        assert_eq!(ids(&r.received[0]), ["a", "b", "c"]);
        assert_eq!(r.received[0]["items"][0]["day"], "2000-01-01");
    }
    let metrics = hub.metrics.encode();
    assert!(
        metrics.contains("iochub_overdue{unit=\"25363\"} 2"),
        "{metrics}"
    );

    // Nothing new: no POST.
    let again = watch.check(&hub).await.unwrap();
    assert!(again.announced.is_empty());
    assert_eq!(received.lock().unwrap().received.len(), 1);

    // A new overdue item while the receiver fails: not marked, so the next check sends it.
    t.write(
        "inbox/b.jsonl",
        "{\"id\": \"d\", \"n\": 5, \"name\": \"25369\", \"day\": \"2003-01-01\"}\n",
    );
    hub.run("deadlines", "test").await.unwrap();
    received.lock().unwrap().fail = true;
    assert!(watch.check(&hub).await.is_err());
    received.lock().unwrap().fail = false;
    drop(hub);

    // After a restart, only `d` is new.
    let hub = t.open().await;
    let after = watch.check(&hub).await.unwrap();
    assert_eq!(after.announced, ["d"]);
    let r = received.lock().unwrap();
    assert_eq!(r.received.len(), 2);
    assert_eq!(ids(&r.received[1]), ["d"]);
}

#[test]
fn the_overdue_query_may_not_read_personal_data() {
    let t = TestHub::new();
    t.write("schemas/people.schema.json", crate::common::PEOPLE_SCHEMA);
    let pipeline = |name: &str, extra: &str| {
        format!(
            "name = \"{name}\"\ntitle = \"Người\"\nsector = \"test\"\nschema = \"../schemas/people.schema.json\"\n\
             key = [\"id\"]\nsharing = \"default\"\nschedule = \"0 0 * * * *\"\n\n{extra}\
             [source]\nkind = \"file\"\npath = \"../inbox/*.jsonl\"\nformat = \"jsonl\"\n"
        )
    };
    t.write("pipelines/people.toml", pipeline("people", ""));
    t.write(
        "pipelines/contacts.toml",
        pipeline(
            "contacts",
            "[[computed]]\nname = \"contact\"\nsql = \"'tel: ' || phone\"\n\n",
        ),
    );
    t.append_config("\n[overdue]\nsql = \"SELECT id, name AS unit, phone FROM people\"\n");
    let problems = iochub::config::load(&t.config_path(), &Default::default())
        .expect_err("refused")
        .to_string();
    assert!(
        problems.contains("the overdue query reads personal data (phone)"),
        "{problems}"
    );
    assert!(
        problems.contains("computed column \"contact\" reads personal data (phone)"),
        "{problems}"
    );
}

#[test]
fn the_overdue_query_needs_id_and_unit() {
    let t = TestHub::new();
    t.add_pipeline("items", &["id"], JSONL_INBOX);
    t.append_config(
        "\n[overdue]\nsql = \"SELECT id FROM items\"\nwebhook_url = \"http://192.0.2.1/hook\"\n",
    );
    let problems = iochub::config::load(&t.config_path(), &Default::default())
        .expect_err("refused")
        .to_string();
    assert!(problems.contains("column named \"unit\""), "{problems}");
    assert!(problems.contains("must be https"), "{problems}");
}
