//! A throw-away hub in a temporary folder, and a local HTTP server for it.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use iochub::Hub;
use iochub::config::{self, Overrides};
use serde_json::Value;

/// A simple schema used by most tests: a string id, an integer and an optional name.
pub const SIMPLE_SCHEMA: &str = r#"{
  "$schema": "https://json-schema.org/draft/2020-12/schema",
  "title": "Thử nghiệm",
  "type": "object",
  "required": ["id", "n"],
  "properties": {
    "id": {"type": "string", "description": "Mã"},
    "n": {"type": "integer", "minimum": 0, "description": "Số lượng"},
    "name": {"type": "string", "description": "Tên"},
    "day": {"type": "string", "format": "date", "description": "Ngày"}
  }
}"#;

/// People with personal data (`phone`, masked by `x-mask`) and every column kind: the feed
/// and PostgreSQL tests.
pub const PEOPLE_SCHEMA: &str = r#"{
  "$schema": "https://json-schema.org/draft/2020-12/schema",
  "title": "Người",
  "type": "object",
  "required": ["id", "n"],
  "properties": {
    "id": {"type": "string", "description": "Mã"},
    "n": {"type": "integer", "description": "Số thứ tự"},
    "name": {"type": "string", "description": "Họ tên"},
    "phone": {"type": "string", "description": "Số điện thoại", "x-pii": true, "x-mask": "phone"},
    "score": {"type": "number", "description": "Điểm"},
    "active": {"type": "boolean", "description": "Còn hoạt động"},
    "born": {"type": "string", "format": "date", "description": "Ngày sinh"},
    "seen": {"type": "string", "format": "date-time", "description": "Lần cuối"}
  }
}"#;

pub struct TestHub {
    pub dir: tempfile::TempDir,
}

impl TestHub {
    /// A hub folder with `config.toml`, `schemas/simple.schema.json` and no pipelines yet.
    pub fn new() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::create_dir_all(dir.path().join("pipelines")).unwrap();
        std::fs::create_dir_all(dir.path().join("schemas")).unwrap();
        std::fs::create_dir_all(dir.path().join("inbox")).unwrap();
        std::fs::write(dir.path().join("schemas/simple.schema.json"), SIMPLE_SCHEMA).unwrap();
        std::fs::write(dir.path().join("config.toml"), config_toml("")).unwrap();
        TestHub { dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn config_path(&self) -> PathBuf {
        self.path().join("config.toml")
    }

    pub fn set_query_limits(&self, extra: &str) {
        std::fs::write(self.config_path(), config_toml(extra)).unwrap();
    }

    /// Points `http.addr` (and so `iochub run`'s daemon look-up) at a real port.
    pub fn set_http_port(&self, port: u16) {
        let text = std::fs::read_to_string(self.config_path()).unwrap();
        std::fs::write(
            self.config_path(),
            text.replace("127.0.0.1:1\"", &format!("127.0.0.1:{port}\"")),
        )
        .unwrap();
    }

    /// Adds settings to the `[postgres]` section.
    pub fn set_postgres(&self, extra: &str) {
        let text = std::fs::read_to_string(self.config_path()).unwrap();
        let section = "[postgres]\naddr = \"127.0.0.1:0\"\n";
        assert!(text.contains(section));
        std::fs::write(
            self.config_path(),
            text.replace(section, &format!("{section}{extra}\n")),
        )
        .unwrap();
    }

    /// Appends sections to `config.toml` (e.g. `[auth]`).
    pub fn append_config(&self, extra: &str) {
        let mut text = std::fs::read_to_string(self.config_path()).unwrap();
        text.push_str(extra);
        std::fs::write(self.config_path(), text).unwrap();
    }

    pub async fn open_with_clock(&self, clock: Arc<ManualClock>) -> Arc<Hub> {
        let config = config::load(&self.config_path(), &Overrides::default())
            .unwrap_or_else(|e| panic!("config should load: {e}"));
        Hub::open_with_clock(config, clock)
            .await
            .expect("hub opens")
    }

    /// Adds `pipelines/<name>.toml` using the simple schema and the given `[source]` body.
    pub fn add_pipeline(&self, name: &str, key: &[&str], source: &str) {
        self.add_pipeline_with(name, key, "", source);
    }

    /// Like `add_pipeline`, with extra top-level settings (`max_staleness = ...`) before
    /// `[source]`; tables such as `[cursor]` may follow the source body in `source`.
    pub fn add_pipeline_with(&self, name: &str, key: &[&str], settings: &str, source: &str) {
        let key = key
            .iter()
            .map(|k| format!("{k:?}"))
            .collect::<Vec<_>>()
            .join(", ");
        let text = format!(
            "name = \"{name}\"\ntitle = \"Dữ liệu {name}\"\nsector = \"test\"\n\
             schema = \"../schemas/simple.schema.json\"\nkey = [{key}]\nsharing = \"default\"\n\
             publishers = [\"pub\"]\n\
             schedule = \"0 0 * * * *\"\n{settings}\n\n[source]\n{source}\n"
        );
        std::fs::write(self.path().join(format!("pipelines/{name}.toml")), text).unwrap();
    }

    pub fn write(&self, relative: &str, content: impl AsRef<[u8]>) -> PathBuf {
        let path = self.path().join(relative);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).unwrap();
        }
        std::fs::write(&path, content).unwrap();
        path
    }

    pub async fn open(&self) -> Arc<Hub> {
        let config = config::load(&self.config_path(), &Overrides::default())
            .unwrap_or_else(|e| panic!("config should load: {e}"));
        Hub::open(config).await.expect("hub opens")
    }
}

/// A `[source]` body reading every `inbox/*.jsonl` of a test hub.
pub const JSONL_INBOX: &str = "kind = \"file\"\npath = \"../inbox/*.jsonl\"\nformat = \"jsonl\"";

/// Tokens of the test consumers (their hashes are in the test config).
pub const ADMIN: &str = "t-admin-0123456789";
pub const PUBLISHER: &str = "t-publisher-0123456789";
pub const AGENCY: &str = "t-agency-0123456789";
pub const PROVINCE: &str = "t-province-0123456789";

fn consumer(id: &str, role: &str, token: &str) -> String {
    let hash = hex::encode(iochub::sharing::consumers::hash_token(token));
    format!(
        "\n[[consumers]]\nid = \"{id}\"\nagency = \"Cơ quan {id}\"\nrole = \"{role}\"\ntoken_sha256 = \"{hash}\"\n\
         focal_officer = {{ name = \"Đầu mối {id}\", position = \"Chuyên viên\", phone = \"0271 000 000\", email = \"{id}@example.gov.vn\" }}\n"
    )
}

fn config_toml(extra_query: &str) -> String {
    let consumers = [
        consumer("admin", "admin", ADMIN),
        consumer("pub", "publisher", PUBLISHER),
        consumer("agency", "agency", AGENCY),
        consumer("province", "province", PROVINCE),
    ]
    .concat();
    format!(
        r#"[hub]
id = "test"
name = "Hub thử nghiệm"
data_dir = "data"
shutdown_grace_seconds = 1

# Nothing listens on port 1, so `iochub run` in tests runs in-process.
[http]
addr = "127.0.0.1:1"

[query]
{extra_query}

# Any free port: tests run side by side, and 5433 may be taken.
[postgres]
addr = "127.0.0.1:0"

[organisation]
name = "UBND huyện Thử"
level = "district"
fallback_unit = "VP"

[[organisation.units]]
id = "VP"
name = "Văn phòng HĐND và UBND huyện"
{consumers}"#
    )
}

/// An HTTP client that sends `token` with every request.
pub fn client_with(token: &str) -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        reqwest::header::AUTHORIZATION,
        reqwest::header::HeaderValue::from_str(&format!("Bearer {token}")).unwrap(),
    );
    reqwest::Client::builder()
        .default_headers(headers)
        .build()
        .unwrap()
}

/// GET `url` and parse the JSON answer (whatever its status).
pub async fn get_json(client: &reqwest::Client, url: impl reqwest::IntoUrl) -> Value {
    client.get(url).send().await.unwrap().json().await.unwrap()
}

/// The managing office's client.
pub fn admin_client() -> reqwest::Client {
    client_with(ADMIN)
}

/// A clock that moves only when the test says so.
pub struct ManualClock {
    now: tokio::sync::watch::Sender<chrono::DateTime<chrono::Utc>>,
}

impl ManualClock {
    pub fn new(start: &str) -> Arc<Self> {
        let at = chrono::DateTime::parse_from_rfc3339(start)
            .unwrap()
            .with_timezone(&chrono::Utc);
        let (now, _) = tokio::sync::watch::channel(at);
        Arc::new(ManualClock { now })
    }

    pub fn advance(&self, by: chrono::Duration) {
        self.now.send_modify(|t| *t += by);
    }
}

impl iochub::schedule::Clock for ManualClock {
    fn now(&self) -> chrono::DateTime<chrono::Utc> {
        *self.now.borrow()
    }

    fn sleep_until(
        &self,
        until: chrono::DateTime<chrono::Utc>,
    ) -> futures::future::BoxFuture<'static, ()> {
        let mut rx = self.now.subscribe();
        Box::pin(async move {
            let _ = rx.wait_for(|now| *now >= until).await;
        })
    }
}

/// Serves the hub's HTTP API on a random local port.
pub async fn serve(hub: Arc<Hub>) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(
            listener,
            iochub::http::router(hub).into_make_service_with_connect_info::<std::net::SocketAddr>(),
        )
        .await
        .unwrap();
    });
    addr
}

/// Rows of a query as JSON values, via the same conversion the HTTP API uses.
pub async fn rows(hub: &Hub, sql: &str) -> Vec<Vec<Value>> {
    let result = hub.sql(sql).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
    let json = iochub::query::to_json(&result).unwrap();
    json["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_array().unwrap().clone())
        .collect()
}

pub async fn count(hub: &Hub, sql: &str) -> i64 {
    rows(hub, sql).await[0][0].as_i64().unwrap()
}

/// A citizen report as the feedback app sends it: open, never answered, in category XRAC,
/// sent at `requested` (RFC 3339) from the commune named `commune` (no coordinates).
pub fn citizen_report(id: &str, requested: &str, commune: &str) -> Value {
    serde_json::json!({
        "service_request_id": id,
        "jurisdiction_id": "dongphu.binhphuoc",
        "service_code": "XRAC",
        "service_name": "Xả rác",
        "description": "Rác thải sinh hoạt đổ trộm ven đường nhiều ngày chưa được thu gom.",
        "status": "open",
        "x_status_detail": "moi_tiep_nhan",
        "service_notice": "Thời hạn xử lý, trả lời: 03 ngày làm việc.",
        "requested_datetime": requested,
        "address": format!("ấp 3, {commune}"),
        "x_reported_commune": commune,
        "x_channel": "binh_phuoc_today_app",
        "x_language": "vi",
        "x_submitter": {"full_name": "Trần Văn Bình", "address": format!("ấp 3, {commune}"), "phone": "0912345679"}
    })
}
