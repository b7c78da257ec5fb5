//! The PostgreSQL endpoint, driven by the real `psql` binary and by psycopg 3 (installed
//! here with pip when missing).

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Output};
use std::sync::Arc;

use iochub::Hub;
use serde_json::{Value, json};

use crate::common::{self, AGENCY, PUBLISHER, TestHub};

fn pipeline(name: &str, schema: &str, sharing: &str, inbox: &str) -> String {
    format!(
        "name = \"{name}\"\ntitle = \"Dữ liệu {name}\"\nsector = \"test\"\n\
         schema = \"../schemas/{schema}\"\nkey = [\"id\"]\nsharing = \"{sharing}\"\n\
         publishers = [\"pub\"]\nschedule = \"0 0 * * * *\"\n\n[source]\n\
         kind = \"file\"\npath = \"../{inbox}/*.jsonl\"\nformat = \"jsonl\"\n"
    )
}

/// `people` (default sharing, phone masked), `visits` (default) and `secrets` (special).
async fn hub_with_data(extra_config: &str) -> (TestHub, Arc<Hub>) {
    let t = TestHub::new();
    t.write("schemas/people.schema.json", common::PEOPLE_SCHEMA);
    for (name, schema, sharing) in [
        ("people", "people.schema.json", "default"),
        ("visits", "simple.schema.json", "default"),
        ("secrets", "simple.schema.json", "special"),
    ] {
        std::fs::create_dir_all(t.path().join(format!("in_{name}"))).unwrap();
        t.write(
            &format!("pipelines/{name}.toml"),
            pipeline(name, schema, sharing, &format!("in_{name}")),
        );
    }
    let people: String = (1..=3)
        .map(|i| {
            json!({"id": format!("p{i}"), "n": i, "name": format!("Nguyễn Văn {i}"),
                   "phone": format!("09123456{i:02}"), "score": i as f64 + 0.5, "active": i % 2 == 1,
                   "born": format!("199{i}-04-30"), "seen": format!("2025-09-0{i}T08:30:00+07:00")})
            .to_string()
                + "\n"
        })
        .collect();
    t.write("in_people/a.jsonl", people);
    t.write(
        "in_visits/a.jsonl",
        "{\"id\":\"p1\",\"n\":10,\"name\":\"Xã Tân Lập\"}\n{\"id\":\"p2\",\"n\":20,\"name\":\"Xã Đồng Tâm\"}\n",
    );
    t.write("in_secrets/a.jsonl", "{\"id\":\"s1\",\"n\":1}\n");
    t.set_postgres(extra_config);
    let hub = t.open().await;
    for name in ["people", "visits", "secrets"] {
        let report = hub.run(name, "test").await.unwrap();
        assert!(report.error.is_none(), "{report:?}");
    }
    (t, hub)
}

async fn start(hub: &Arc<Hub>) -> SocketAddr {
    let endpoint = iochub::pg::bind(hub).await.expect("postgres endpoint");
    let addr = endpoint.local_addr().unwrap();
    tokio::spawn(endpoint.run());
    addr
}

/// psql with `-c` commands, unaligned, tuples only, no psqlrc.
async fn psql(
    addr: SocketAddr,
    user: &str,
    password: &str,
    ssl: &str,
    commands: &[&str],
) -> Output {
    let mut command = Command::new("psql");
    command
        .arg(format!(
            "host=127.0.0.1 port={} user={user} dbname=iochub sslmode={ssl} connect_timeout=10",
            addr.port()
        ))
        .args(["-X", "-A", "-t", "-v", "ON_ERROR_STOP=0"])
        .env("PGPASSWORD", password)
        .env("PGCLIENTENCODING", "UTF8");
    for c in commands {
        command.args(["-c", c]);
    }
    tokio::task::spawn_blocking(move || command.output().expect("psql runs"))
        .await
        .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[tokio::test]
async fn psql_logs_in_lists_and_queries_only_what_the_consumer_may_see() {
    let (_t, hub) = hub_with_data("").await;
    let addr = start(&hub).await;

    let out = psql(
        addr,
        "agency",
        AGENCY,
        "disable",
        &["SELECT count(*) FROM people"],
    )
    .await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout).trim(), "3");

    let out = psql(addr, "agency", "wrong-token", "disable", &["SELECT 1"]).await;
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("password authentication failed for user \"agency\""),
        "{}",
        text(&out.stderr)
    );
    // A valid token of another consumer is not a password for this one.
    let out = psql(addr, "agency", PUBLISHER, "disable", &["SELECT 1"]).await;
    assert!(!out.status.success());

    let out = psql(addr, "agency", AGENCY, "disable", &["\\dt"]).await;
    let listing = text(&out.stdout);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        listing.contains("people") && listing.contains("visits"),
        "{listing}"
    );
    assert!(
        !listing.contains("secrets"),
        "a special dataset is not listed: {listing}"
    );

    let out = psql(addr, "agency", AGENCY, "disable", &["\\d people"]).await;
    let described = text(&out.stdout);
    assert!(
        described.contains("phone") && described.contains("born"),
        "{described}"
    );

    let out = psql(
        addr,
        "agency",
        AGENCY,
        "disable",
        &[
            "SELECT p.name, v.name, v.n FROM people p JOIN visits v ON p.id = v.id ORDER BY v.n",
            "SELECT phone FROM people WHERE id = 'p1'",
            "SELECT name FROM people WHERE name = 'Nguyễn Văn 2'",
            "SELECT 'Trần Thị Hồng Ánh — Đắk Lắk' AS t",
        ],
    )
    .await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let lines: Vec<String> = text(&out.stdout).lines().map(str::to_string).collect();
    assert_eq!(
        lines,
        [
            "Nguyễn Văn 1|Xã Tân Lập|10",
            "Nguyễn Văn 2|Xã Đồng Tâm|20",
            "091****601",
            "Nguyễn Văn 2",
            "Trần Thị Hồng Ánh — Đắk Lắk"
        ]
    );

    // The publisher sees its own data unmasked.
    let out = psql(
        addr,
        "pub",
        PUBLISHER,
        "disable",
        &["SELECT phone FROM people WHERE id = 'p1'"],
    )
    .await;
    assert_eq!(text(&out.stdout).trim(), "0912345601");

    let audit = hub
        .audit_log(&iochub::state::AuditFilter {
            consumer: Some("agency".into()),
            action: Some("query".into()),
            limit: 100,
            ..Default::default()
        })
        .unwrap();
    assert!(
        audit.iter().any(|a| a.detail["channel"] == "postgres"),
        "queries over the PostgreSQL protocol are audited"
    );
}

#[tokio::test]
async fn hostile_and_forbidden_statements_fail_cleanly_and_the_session_goes_on() {
    let (t, hub) = hub_with_data("").await;
    let addr = start(&hub).await;
    let target = t.path().join("stolen.csv");
    let copy = format!("COPY (SELECT * FROM people) TO '{}'", target.display());
    let external = "CREATE EXTERNAL TABLE pw STORED AS CSV LOCATION '/etc/passwd'";
    let out = psql(
        addr,
        "agency",
        AGENCY,
        "disable",
        &[
            "SELECT * FROM secrets",
            &copy,
            external,
            "DROP TABLE people",
            "INSERT INTO people (id, n) VALUES ('x', 1)",
            "SELECT count(*) FROM people",
        ],
    )
    .await;
    let errors = text(&out.stderr);
    assert_eq!(
        text(&out.stdout).trim(),
        "3",
        "the connection still answers after the errors: {errors}"
    );
    assert_eq!(errors.matches("ERROR:").count(), 5, "{errors}");
    assert!(errors.contains("read-only"), "{errors}");
    assert!(!target.exists(), "COPY TO wrote a file on the server");
    assert_eq!(common::count(&hub, "SELECT count(*) FROM people").await, 3);
}

#[tokio::test]
async fn tls_is_required_when_configured() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    let made = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=localhost",
            "-keyout",
        ])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("openssl");
    assert!(made.status.success(), "{}", text(&made.stderr));
    let extra = format!(
        "tls_cert = {:?}\ntls_key = {:?}\nrequire_tls = true\n",
        cert.display().to_string(),
        key.display().to_string()
    );
    let (_t, hub) = hub_with_data(&extra).await;
    let addr = start(&hub).await;
    let out = psql(
        addr,
        "agency",
        AGENCY,
        "require",
        &["SELECT count(*) FROM people"],
    )
    .await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout).trim(), "3");
    let out = psql(addr, "agency", AGENCY, "disable", &["SELECT 1"]).await;
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("only over TLS"),
        "{}",
        text(&out.stderr)
    );
}

/// psycopg 3 and asyncpg, installed for the test if missing.
fn python_with_psycopg() -> String {
    let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
    let has = Command::new(&python)
        .args(["-c", "import psycopg, asyncpg"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !has {
        let installed = Command::new(&python)
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
                "psycopg[binary]",
                "asyncpg",
            ])
            .output()
            .expect("pip");
        assert!(
            installed.status.success(),
            "pip install psycopg asyncpg: {}",
            text(&installed.stderr)
        );
    }
    python
}

const PSYCOPG_SCRIPT: &str = r#"
import json, os, sys
import psycopg
dsn = f"host=127.0.0.1 port={os.environ['PGPORT']} dbname=iochub user=agency password={os.environ['TOKEN']} sslmode=disable"
out = {}
with psycopg.connect(dsn, autocommit=True) as conn:
    cur = conn.cursor()
    cur.execute("SELECT id, n, name, phone FROM people WHERE n >= %s ORDER BY n", (2,))
    out["parameterised"] = cur.fetchall()
    cur.execute("SELECT name FROM people WHERE name = %s", ("Nguyễn Văn 3",))
    out["vietnamese"] = cur.fetchone()[0]
    for binary in (False, True):
        cur = conn.cursor(binary=binary)
        cur.execute("SELECT n, score, active, born, seen, name FROM people WHERE id = %s", ("p1",))
        row = cur.fetchone()
        out["binary" if binary else "text"] = [
            type(row[0]).__name__, row[0], type(row[1]).__name__, row[1], row[2],
            row[3].isoformat(), row[4].isoformat(), row[4].utcoffset() is not None, row[5]]
    cur.execute("SELECT NULL::bigint AS nothing, CAST(NULL AS VARCHAR) AS empty")
    out["nulls"] = list(cur.fetchone())
    for name, sql in [("forbidden", "SELECT * FROM secrets"), ("hostile", "DELETE FROM people"),
                      ("copy", "COPY people TO '/tmp/iochub-psycopg-copy.csv'")]:
        try:
            conn.execute(sql)
            out[name] = "no error"
        except psycopg.Error as e:
            out[name] = e.sqlstate
    out["after_errors"] = conn.execute("SELECT count(*) FROM people").fetchone()[0]
with psycopg.connect(dsn) as conn:
    # Not autocommit: psycopg wraps statements in BEGIN ... COMMIT, as BI tools do.
    out["in_transaction"] = conn.execute("SELECT count(*) FROM visits").fetchone()[0]

# asyncpg: prepared statements with binary results only.
import asyncio, asyncpg
async def with_asyncpg():
    conn = await asyncpg.connect(host="127.0.0.1", port=int(os.environ["PGPORT"]), user="agency",
                                 password=os.environ["TOKEN"], database="iochub", ssl=False)
    row = await conn.fetchrow("SELECT n, score, active, born, seen, name, phone FROM people WHERE n = $1", 2)
    await conn.close()
    return [row[0], row[1], row[2], row[3].isoformat(), row[4].isoformat(), row[5], row[6]]
out["asyncpg"] = asyncio.run(with_asyncpg())
print(json.dumps(out, default=str))
"#;

#[tokio::test]
async fn psycopg_and_asyncpg_prepared_statements_types_and_errors() {
    let python = python_with_psycopg();
    let (t, hub) = hub_with_data("").await;
    let addr = start(&hub).await;
    let script = t.path().join("client.py");
    std::fs::write(&script, PSYCOPG_SCRIPT).unwrap();
    let out = tokio::task::spawn_blocking({
        let script = script.clone();
        move || {
            Command::new(python)
                .arg(&script)
                .env("PGPORT", addr.port().to_string())
                .env("TOKEN", AGENCY)
                .output()
                .unwrap()
        }
    })
    .await
    .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let got: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        got["parameterised"],
        json!([
            ["p2", 2, "Nguyễn Văn 2", "091****602"],
            ["p3", 3, "Nguyễn Văn 3", "091****603"]
        ])
    );
    assert_eq!(got["vietnamese"], "Nguyễn Văn 3");
    for format in ["text", "binary"] {
        assert_eq!(
            got[format],
            json!([
                "int",
                1,
                "float",
                1.5,
                true,
                "1991-04-30",
                "2025-09-01T01:30:00+00:00",
                true,
                "Nguyễn Văn 1"
            ]),
            "{format} results"
        );
    }
    assert_eq!(got["nulls"], json!([null, null]));
    assert_eq!(got["forbidden"], "42P01");
    assert_eq!(got["hostile"], "25006");
    assert_eq!(got["copy"], "25006");
    assert_eq!(got["after_errors"], 3);
    assert_eq!(got["in_transaction"], 2);
    assert_eq!(
        got["asyncpg"],
        json!([
            2,
            2.5,
            false,
            "1992-04-30",
            "2025-09-02T01:30:00+00:00",
            "Nguyễn Văn 2",
            "091****602"
        ])
    );
    assert!(!Path::new("/tmp/iochub-psycopg-copy.csv").exists());
}

/// A client that names a consumer in its startup parameters, fails the password and goes on
/// sending queries runs nothing (pgwire keeps reading after a failed login).
#[tokio::test]
async fn a_failed_login_runs_nothing_whatever_the_startup_parameters_say() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (_t, hub) = hub_with_data("").await;
    let addr = start(&hub).await;
    let mut socket = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut body = 196_608u32.to_be_bytes().to_vec(); // protocol 3.0
    for part in [
        "user",
        "agency",
        "database",
        "iochub",
        "iochub_consumer",
        "admin",
        "statement_timeout_ms",
        "0",
    ] {
        body.extend_from_slice(part.as_bytes());
        body.push(0);
    }
    body.push(0);
    let mut startup = ((body.len() + 4) as u32).to_be_bytes().to_vec();
    startup.extend_from_slice(&body);
    socket.write_all(&startup).await.unwrap();
    let mut first = [0u8; 1];
    socket.read_exact(&mut first).await.unwrap();
    assert_eq!(first[0], b'R', "asked for a password");
    let message = |tag: u8, text: &str| {
        let mut m = vec![tag];
        m.extend_from_slice(&((text.len() + 5) as u32).to_be_bytes());
        m.extend_from_slice(text.as_bytes());
        m.push(0);
        m
    };
    socket
        .write_all(&message(b'p', "wrong-token"))
        .await
        .unwrap();
    // Whatever the server does with it now, nothing may run.
    let _ = socket
        .write_all(&message(b'Q', "SELECT 4242 AS spoofed"))
        .await;
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let audit = hub
        .audit_log(&iochub::state::AuditFilter {
            action: Some("query".into()),
            limit: 1000,
            ..Default::default()
        })
        .unwrap();
    assert!(
        !audit
            .iter()
            .any(|a| a.detail["sql"].as_str().unwrap_or("").contains("4242")),
        "a query ran after a failed login: {audit:?}"
    );
    let failed = hub
        .audit_log(&iochub::state::AuditFilter {
            action: Some("auth_failed".into()),
            limit: 10,
            ..Default::default()
        })
        .unwrap();
    assert_eq!(failed.len(), 1);
}

const REVOKE_SCRIPT: &str = r#"
import asyncio, os, sys
import asyncpg
async def main():
    conn = await asyncpg.connect(host="127.0.0.1", port=int(os.environ["PGPORT"]), user="province",
                                 password=os.environ["TOKEN"], database="iochub", ssl=False)
    # One server-side prepared statement, executed twice.
    statement = await conn.prepare("SELECT count(*) FROM share.secrets_for_province WHERE n >= $1")
    print(await statement.fetchval(0), flush=True)
    sys.stdin.readline()  # the share is revoked meanwhile
    try:
        print(await statement.fetchval(0), flush=True)
    except asyncpg.PostgresError as e:
        print(e.sqlstate, flush=True)
    await conn.close()
asyncio.run(main())
"#;

/// A prepared statement is planned again at each execution: a share revoked after it was
/// prepared stops answering on the same connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_share_stops_answering_a_statement_prepared_before() {
    use std::io::{BufRead, Write};
    let python = python_with_psycopg();
    let (t, hub) = hub_with_data("").await;
    let province = hub.config.consumers.get("province").unwrap().clone();
    let admin = hub.config.consumers.get("admin").unwrap().clone();
    let request: iochub::sharing::GrantRequest = serde_json::from_value(json!({
        "name": "secrets_for_province", "purpose": "Thử nghiệm", "legal_basis": "Thử nghiệm",
        "dataset": "secrets", "end_date": "2099-12-31"
    }))
    .unwrap();
    let filed = hub.file_share_request(&province, request).await.unwrap();
    hub.decide_share_request(
        &admin,
        &filed.grant.id,
        iochub::hub::Decision::Approve,
        None,
    )
    .await
    .unwrap();
    let addr = start(&hub).await;
    let script = t.path().join("revoke.py");
    std::fs::write(&script, REVOKE_SCRIPT).unwrap();
    let mut child = Command::new(python)
        .arg(&script)
        .env("PGPORT", addr.port().to_string())
        .env("TOKEN", common::PROVINCE)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let first = tokio::task::block_in_place(|| lines.next())
        .unwrap()
        .unwrap();
    assert_eq!(first, "1", "the approved share answers");
    hub.decide_share_request(&admin, &filed.grant.id, iochub::hub::Decision::Revoke, None)
        .await
        .unwrap();
    child.stdin.as_mut().unwrap().write_all(b"go\n").unwrap();
    let second = tokio::task::block_in_place(|| lines.next())
        .unwrap()
        .unwrap();
    assert_eq!(
        second, "42P01",
        "the revoked share is gone, prepared statement or not"
    );
    child.wait().unwrap();
}

const JDBC_CLIENT: &str = r#"
import java.sql.*;
public class JdbcClient {
    public static void main(String[] a) throws Exception {
        String url = "jdbc:postgresql://127.0.0.1:" + a[0] + "/iochub?sslmode=disable";
        try (Connection c = DriverManager.getConnection(url, "agency", a[1])) {
            DatabaseMetaData md = c.getMetaData();
            try (ResultSet rs = md.getTables(null, "public", "%", new String[]{"TABLE"})) {
                StringBuilder sb = new StringBuilder("tables");
                while (rs.next()) sb.append(' ').append(rs.getString("TABLE_NAME"));
                System.out.println(sb);
            }
            try (ResultSet rs = md.getColumns(null, "public", "people", "%")) {
                int n = 0; while (rs.next()) n++;
                System.out.println("people columns " + n);
            }
            try (PreparedStatement ps = c.prepareStatement("SELECT name, n, score, phone FROM people WHERE n > ? ORDER BY n")) {
                ps.setLong(1, 1);
                for (int i = 0; i < 6; i++) {  // pgjdbc prepares on the server from the 5th run
                    try (ResultSet rs = ps.executeQuery()) {
                        if (i == 5) while (rs.next())
                            System.out.println(rs.getString(1) + "|" + rs.getLong(2) + "|" + rs.getDouble(3) + "|" + rs.getString(4));
                    }
                }
            }
            try (Statement st = c.createStatement()) {
                st.execute("DROP TABLE people");
            } catch (SQLException e) { System.out.println("refused " + e.getSQLState()); }
            try (Statement st = c.createStatement(); ResultSet rs = st.executeQuery("SELECT count(*) FROM people")) {
                rs.next(); System.out.println("after error " + rs.getLong(1));
            }
        }
    }
}
"#;

/// The PostgreSQL JDBC driver (Debian's package, installed here if missing): metadata as
/// DBeaver reads it, server-side prepared statements, errors.
#[tokio::test]
async fn jdbc_reads_metadata_and_runs_prepared_statements() {
    let jar = Path::new("/usr/share/java/postgresql.jar");
    if !jar.exists() {
        let installed = Command::new("apt-get")
            .args(["install", "-y", "libpostgresql-jdbc-java"])
            .output()
            .expect("apt-get");
        assert!(
            installed.status.success(),
            "installing the JDBC driver: {}",
            text(&installed.stderr)
        );
    }
    let (t, hub) = hub_with_data("").await;
    let addr = start(&hub).await;
    let source = t.path().join("JdbcClient.java");
    std::fs::write(&source, JDBC_CLIENT).unwrap();
    let out = tokio::task::spawn_blocking(move || {
        Command::new("java")
            .arg("-cp")
            .arg(jar)
            .arg(&source)
            .args([addr.port().to_string(), AGENCY.to_string()])
            .output()
            .expect("java runs")
    })
    .await
    .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let lines: Vec<String> = text(&out.stdout).lines().map(str::to_string).collect();
    assert_eq!(
        lines,
        [
            "tables people visits",
            "people columns 11",
            "Nguyễn Văn 2|2|2.5|091****602",
            "Nguyễn Văn 3|3|3.5|091****603",
            "refused 25006",
            "after error 3"
        ]
    );
}
