//! `iochub check` reports every problem at once, with file and line; `serve` refuses the same.

use std::process::Command;

use crate::common::TestHub;

fn broken_hub() -> TestHub {
    let t = TestHub::new();
    let config = std::fs::read_to_string(t.config_path()).unwrap();
    let config = config.replace(
        "name = \"Hub thử nghiệm\"",
        "name = \"Hub thử nghiệm\"\ncolour = \"blue\"",
    );
    let config = config.replace("fallback_unit = \"VP\"", "fallback_unit = \"NOPE\"");
    let config = config + "\n[calendar]\nfile = \"missing-calendar.toml\"\n";
    t.write("config.toml", config);
    t.write(
        "schemas/broken.schema.json",
        r#"{"type": "object", "properties": {"a": {"type": 12}}}"#,
    );
    t.write("schemas/notjson.schema.json", "{ this is not json");
    t.write(
        "pipelines/a.toml",
        "name = \"alpha\"\ntitle = \"A\"\ntitel = \"typo\"\nsector = \"test\"\nschema = \"../schemas/missing.schema.json\"\n\
         sharing = \"default\"\nschedule = \"every day at noon\"\n\n[source]\nkind = \"file\"\npath = \"x.jsonl\"\nformat = \"jsonl\"\n",
    );
    t.write(
        "pipelines/b.toml",
        "name = \"dup\"\ntitle = \"B\"\nsector = \"test\"\nschema = \"../schemas/broken.schema.json\"\n\
         sharing = \"default\"\nschedule = \"0 * * * *\"\n\n[source]\nkind = \"file\"\npath = \"x.jsonl\"\nformat = \"jsonl\"\n",
    );
    t.write(
        "pipelines/c.toml",
        "name = \"dup\"\ntitle = \"C\"\nsector = \"test\"\nschema = \"../schemas/simple.schema.json\"\nkey = [\"id\", \"nonexistent\"]\n\
         sharing = \"default\"\nschedule = \"0 * * * *\"\n\n[source]\nkind = \"file\"\npth = \"x.jsonl\"\npath = \"y.jsonl\"\nformat = \"jsonl\"\n",
    );
    t.write(
        "pipelines/d.toml",
        "name = \"Bad Name\"\ntitle = \"D\"\nsector = \"test\"\nschema = \"../schemas/notjson.schema.json\"\n\
         sharing = \"public\"\nschedule = \"0 * * * *\"\n\n[source]\nkind = \"ftp\"\n",
    );
    t.write(
        "pipelines/f.toml",
        "name = \"foxtrot\"\ntitle = \"F\"\nsector = \"test\"\nschema = \"../schemas/simple.schema.json\"\n\
         sharing = \"default\"\nschedule = \"0 * * * *\"\ntransform = \"SELECT nope FROM input\"\n\n[source]\nkind = \"file\"\npath = \"x.jsonl\"\nformat = \"jsonl\"\n\n\
         [[checks]]\nname = \"bad\"\nrule = \"n + 1\"\nmessage = \"x\"\n",
    );
    t.write(
        "pipelines/e.toml",
        "name = \"echo\"\ntitle = \"E\"\nsector = \"test\"\nschema = \"../schemas/notjson.schema.json\"\n\
         sharing = \"default\"\nschedule = \"0 * * * *\"\n\n[source]\nkind = \"ftp\"\n",
    );
    // A push dataset with a schedule and a setting it does not have.
    t.write(
        "pipelines/g.toml",
        "name = \"golf\"\ntitle = \"G\"\nsector = \"test\"\nschema = \"../schemas/simple.schema.json\"\n\
         sharing = \"default\"\nschedule = \"0 * * * *\"\n\n[source]\nkind = \"push\"\nurl = \"x\"\n",
    );
    // A pulled dataset without a schedule is fine (it runs on demand), but cannot take reports.
    t.write(
        "pipelines/h.toml",
        "name = \"hotel\"\ntitle = \"H\"\nsector = \"test\"\nschema = \"../schemas/simple.schema.json\"\n\
         key = [\"id\"]\nsharing = \"default\"\n\n[source]\nkind = \"file\"\npath = \"x.jsonl\"\nformat = \"jsonl\"\n",
    );
    t.write(
        "reports/r.toml",
        "name = \"r\"\ntitle = \"R\"\nrevise_for = \"two months\"\npublish_to = \"hotel\"\n\n\
         [[sections]]\ntitle = \"S\"\nsql = \"SELECT 1 AS x\"\n",
    );
    t
}

pub(crate) fn iochub(args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_iochub"))
        .args(args)
        .env("RUST_LOG", "error")
        .output()
        .expect("run iochub");
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

#[test]
fn check_reports_every_problem_with_file_and_line() {
    let t = broken_hub();
    let config = t.config_path();
    let (ok, out) = iochub(&["--config", config.to_str().unwrap(), "check"]);
    assert!(!ok, "check must fail:\n{out}");
    let config_text = std::fs::read_to_string(&config).unwrap();
    let line_of = |needle: &str| {
        config_text
            .lines()
            .position(|l| l.contains(needle))
            .unwrap()
            + 1
    };
    let colour = format!(
        "config.toml:{}: unknown key `hub.colour`",
        line_of("colour")
    );
    let fallback = format!(
        "config.toml:{}: fallback_unit \"NOPE\"",
        line_of("fallback_unit")
    );
    let expect = [
        colour.as_str(),
        fallback.as_str(),
        "a.toml:3: unknown key `titel`",
        "a.toml:5: cannot read schema",
        "a.toml:7: schedule \"every day at noon\" is not a valid cron expression",
        "b.toml:4: schema",
        "not a valid JSON Schema",
        "c.toml:1: dataset name \"dup\" is already used by",
        "c.toml:5: key column \"nonexistent\" is not a property",
        "c.toml:11: unknown key `source.pth`",
        "d.toml:5: unknown variant `public`",
        "e.toml:4: schema",
        "is not valid JSON",
        "e.toml:9: unknown connector kind \"ftp\"",
        "cannot read the calendar",
        "f.toml:7: transform:",
        "f.toml:16: check \"bad\": the rule is Int64, not a true/false expression",
        "g.toml:6: a push dataset is sent in, never pulled: remove `schedule`",
        "g.toml:10: unknown key `source.url`",
        "r.toml:3: \"two months\" does not start with a whole number",
        "r.toml:4: publish_to: dataset \"hotel\" has a \"file\" source",
    ];
    for e in expect {
        assert!(out.contains(e), "missing {e:?} in:\n{out}");
    }
}

#[test]
fn serve_refuses_an_invalid_config_with_the_same_messages() {
    let t = broken_hub();
    let config = t.config_path();
    let (ok, out) = iochub(&[
        "--config",
        config.to_str().unwrap(),
        "serve",
        "--http-addr",
        "127.0.0.1:0",
    ]);
    assert!(!ok);
    assert!(
        out.contains("unknown key `hub.colour`") && out.contains("unknown key `source.pth`"),
        "{out}"
    );
}

#[test]
fn the_shipped_config_checks_clean() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let (ok, out) = iochub(&[
        "--config",
        root.join("config.toml").to_str().unwrap(),
        "check",
    ]);
    assert!(ok, "{out}");
    assert!(out.contains("8 pipelines"), "{out}");
}

#[test]
fn token_new_prints_a_token_once_and_its_hash_for_the_config() {
    let (ok, out) = iochub(&["token", "new", "so_yte"]);
    assert!(ok, "{out}");
    let token = out
        .lines()
        .map(str::trim)
        .find(|l| l.len() == 64 && l.chars().all(|c| c.is_ascii_hexdigit()))
        .expect("a 64-hex token line");
    let hash = hex::encode(iochub::sharing::consumers::hash_token(token));
    assert!(out.contains(&format!("token_sha256 = \"{hash}\"")), "{out}");
    let (_, again) = iochub(&["token", "new", "so_yte"]);
    assert!(!again.contains(token), "a new token each time");
}

#[test]
fn a_transform_may_not_carry_personal_data_past_its_mask() {
    let t = TestHub::new();
    // `active` made personal too: a yes/no that is itself personal data.
    let schema = crate::common::PEOPLE_SCHEMA.replace(
        "\"active\": {\"type\": \"boolean\",",
        "\"active\": {\"type\": \"boolean\", \"x-pii\": true,",
    );
    assert!(schema.contains("\"x-pii\": true,"));
    t.write("schemas/people.schema.json", schema);
    let transform = "WITH t AS (SELECT id, n, phone AS tel, name, active FROM input) \
        SELECT id, n, tel AS contact, \
               tel IS NOT NULL AS has_phone, \
               mask_phone(tel) AS masked, \
               CASE WHEN tel IS NULL THEN 'thiếu số điện thoại' END AS note, \
               concat(name, ' ', tel) AS label, \
               (SELECT max(phone) FROM input) AS any_phone, \
               NOT active AS inactive, \
               tel AS phone \
        FROM t";
    t.write(
        "pipelines/people.toml",
        format!(
            "name = \"people\"\ntitle = \"P\"\nsector = \"test\"\nschema = \"../schemas/people.schema.json\"\n\
             sharing = \"default\"\ntransform = \"{transform}\"\n\n[source]\nkind = \"file\"\npath = \"x.jsonl\"\nformat = \"jsonl\"\n"
        ),
    );
    let (ok, out) = iochub(&["--config", t.config_path().to_str().unwrap(), "check"]);
    assert!(!ok, "{out}");
    let flagged: Vec<&str> = out
        .lines()
        .filter(|l| l.contains("carries personal data"))
        .filter_map(|l| l.split("column \"").nth(1)?.split('"').next())
        .collect();
    // The copy under another name, the text built from it, the subquery's answer and the
    // negated personal yes/no; not the test of the phone, the mask, the CASE's own text, nor
    // the copy under the personal name.
    assert_eq!(
        flagged,
        ["contact", "label", "any_phone", "inactive"],
        "{out}"
    );
    assert!(
        out.contains("people.toml:6: transform: column \"contact\" carries personal data (phone)"),
        "{out}"
    );
}
