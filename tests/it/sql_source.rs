//! A `postgres` pipeline through the whole hub against the PostgreSQL server on 127.0.0.1:
//! the connection string comes from the environment, and the cursor committed with the first
//! run's data makes the second run read only the rows added since.

use std::process::Command;

use crate::common::TestHub;

const URL: &str = "postgres://postgres@127.0.0.1:5432/test";

fn psql(sql: &str) {
    let out = Command::new("psql")
        .args([
            "-h",
            "127.0.0.1",
            "-U",
            "postgres",
            "-d",
            "test",
            "-v",
            "ON_ERROR_STOP=1",
            "-qc",
            sql,
        ])
        .output()
        .expect("psql runs");
    assert!(
        out.status.success(),
        "psql {sql}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn iochub(t: &TestHub, args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_iochub"))
        .arg("--config")
        .arg(t.config_path())
        .args(args)
        .env("RUST_LOG", "warn")
        .env("IOCHUB_IT_DOSSIERS_DB", URL)
        .output()
        .expect("iochub runs");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "iochub {args:?}: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

#[test]
fn a_database_pipeline_reads_only_new_rows_on_its_second_run() {
    let table = format!("iochub_it_{}", std::process::id());
    psql(&format!(
        "DROP TABLE IF EXISTS {table}; CREATE TABLE {table} (id int PRIMARY KEY, name text);\
         INSERT INTO {table} VALUES (1, 'Trạm Y tế xã Tân Lập'), (2, 'UBND thị trấn Tân Phú'), (3, 'Xã Đồng Tiến');"
    ));
    let t = TestHub::new();
    t.add_pipeline(
        "dossiers_db",
        &["id"],
        &format!(
            "kind = \"postgres\"\nurl_env = \"IOCHUB_IT_DOSSIERS_DB\"\n\
             query = \"SELECT 'r' || id AS id, id AS n, name FROM {table}\"\ncursor_column = \"n\"\nbatch_size = 2\n"
        ),
    );
    let first = iochub(&t, &["run", "dossiers_db"]);
    assert!(
        first.contains("fetched 3, accepted 3, rejected 0"),
        "{first}"
    );

    psql(&format!(
        "INSERT INTO {table} VALUES (4, 'Phường Tân Bình'), (5, 'Xã Thuận Lợi');"
    ));
    let second = iochub(&t, &["run", "dossiers_db"]);
    assert!(
        second.contains("fetched 2, accepted 2, rejected 0"),
        "{second}"
    );
    let third = iochub(&t, &["run", "dossiers_db"]);
    assert!(third.contains("fetched 0"), "{third}");

    let stored = iochub(
        &t,
        &[
            "sql",
            "SELECT count(*) AS n, max(CASE WHEN id = 'r5' THEN name END) AS fifth FROM dossiers_db",
        ],
    );
    assert!(
        stored.contains("| 5 ") && stored.contains("Xã Thuận Lợi"),
        "{stored}"
    );
    psql(&format!("DROP TABLE {table};"));
}
