//! `[secrets]`: only the jobs that list a secret receive it, and its value, in any of the
//! encodings a job is likely to print, appears nowhere weir writes: its output, `--json`, run
//! records, cache entries, any git object or any file under `.git`.

use std::path::Path;

use crate::common::{Run, TestRepo};

const TOKEN: &str = "s3cr3t??>~tok-value";
/// A multi-line value, as a key file holds one; `ab` is a line too short to be masked alone.
const KEY: &str =
    "-----BEGIN TEST KEY-----\nline-one-abcdef\nline-two-ghijkl\nab\n-----END TEST KEY-----";

const PIPELINE: &str = r#"
[secrets]
TOKEN = { env = "MY_TOKEN" }
KEY = { file = ".secrets/key" }

[jobs.leak]
secrets = ["TOKEN", "KEY"]
run = [
  'echo "raw: $TOKEN"',
  'printf %s "$TOKEN" | base64 -w0; echo',
  'printf %s "$TOKEN" | base64 -w0 | tr "+/" "-_" | tr -d =; echo',
  'printf "user:%s" "$TOKEN" | base64 -w0; echo',
  'printf "u:%s" "$TOKEN" | base64 -w0 | tr "+/" "-_"; echo',
  'printf %s "$TOKEN" | od -An -tx1 | tr -d " \n"; echo',
  'printf %s "$TOKEN" | od -An -tx1 | tr -d " \n" | tr a-f A-F; echo',
  'printf %s "$TOKEN" | head -c 7; sleep 0.3; printf %s "$TOKEN" | tail -c +8; echo',
  'echo "$KEY"',
  'echo "second line: $(echo "$KEY" | sed -n 3p)"',
  'echo "short line: $(echo "$KEY" | sed -n 4p)"',
  'printf %s "$KEY" | base64 -w0; echo',
  'echo "$TOKEN" >&2',
]

[jobs.other]
run = 'echo "other sees ${TOKEN:-no token} ${KEY:-no key}"; env > other-env.txt'
"#;

fn base64(bytes: &[u8], url: bool) -> String {
    let alphabet: &[u8; 64] = if url {
        b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    } else {
        b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    };
    let mut bits = String::new();
    for b in bytes {
        bits.push_str(&format!("{b:08b}"));
    }
    bits.as_bytes()
        .chunks(6)
        .map(|c| {
            let mut six = String::from_utf8_lossy(c).into_owned();
            while six.len() < 6 {
                six.push('0');
            }
            char::from(alphabet[usize::from_str_radix(&six, 2).unwrap_or(0)])
        })
        .collect()
}

/// What would reveal `value`: the value, its lines of 4 bytes or more, hex in both cases, and
/// base64 (both alphabets) at each alignment, less the characters that mix in other bytes.
fn revealing(value: &str) -> Vec<String> {
    let mut out = vec![value.to_owned()];
    out.extend(value.lines().filter(|l| l.len() >= 4).map(str::to_owned));
    let hex: String = value.bytes().map(|b| format!("{b:02x}")).collect();
    out.push(hex.to_uppercase());
    out.push(hex);
    for url in [false, true] {
        for shift in 0..3 {
            let mut shifted = vec![0u8; shift];
            shifted.extend_from_slice(value.as_bytes());
            let encoded = base64(&shifted, url);
            let start = (8 * shift).div_ceil(6);
            let end = 8 * (shift + value.len()) / 6;
            out.push(encoded[start..end].to_owned());
        }
    }
    out
}

#[track_caller]
fn assert_hidden(what: &str, haystack: &[u8]) {
    let text = String::from_utf8_lossy(haystack);
    for value in [TOKEN, KEY] {
        for needle in revealing(value) {
            assert!(
                !text.contains(&needle),
                "{what} reveals a secret as {needle:?}:\n{text}"
            );
        }
    }
}

/// Every regular file under `dir`, read as bytes.
fn files_under(dir: &Path, out: &mut Vec<(String, Vec<u8>)>) {
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        let kind = entry.file_type().unwrap();
        if kind.is_dir() {
            files_under(&path, out);
        } else if kind.is_file() {
            out.push((path.display().to_string(), std::fs::read(&path).unwrap()));
        }
    }
}

/// Asserts that nothing in the repository's git data reveals a secret: every object, through
/// git (loose objects are compressed), and every file under `.git` as raw bytes.
fn assert_git_clean(repo: &TestRepo) {
    let objects = repo.git_with_input(
        &["cat-file", "--batch-all-objects", "--batch", "--unordered"],
        b"",
    );
    assert!(
        objects.contains("raw: ***"),
        "the run left no log:\n{objects}"
    );
    assert_hidden("git cat-file --batch-all-objects", objects.as_bytes());
    let mut files = Vec::new();
    files_under(&repo.file(".git"), &mut files);
    assert!(files.len() > 10, "{files:?}");
    for (path, bytes) in files {
        assert_hidden(&path, &bytes);
    }
}

fn with_secrets(repo: &TestRepo, token: Option<&str>, args: &[&str]) -> Run {
    let mut cmd = repo.weir_cmd(args);
    if let Some(token) = token {
        cmd.env("MY_TOKEN", token);
    }
    Run(cmd.output().expect("run weir"))
}

fn secrets_repo() -> TestRepo {
    let repo = TestRepo::with_pipeline(PIPELINE);
    repo.write(".secrets/key", format!("{KEY}\n"));
    repo.write(".gitignore", ".secrets/\n");
    repo.commit_all("pipeline");
    repo
}

#[test]
fn secrets_are_masked_in_every_encoding_everywhere_weir_writes() {
    let repo = secrets_repo();
    let run = with_secrets(&repo, Some(TOKEN), &["run", "-j", "1"]);
    run.expect_code(0);
    let err = run.stderr();
    // The job did print them, masked: raw, as a line of KEY, split across writes.
    for shown in [
        "leak | raw: ***",
        "leak | second line: ***",
        "leak | ***\n",
        "leak | dXNlcjp***",
    ] {
        assert!(err.contains(shown), "missing {shown:?} in:\n{err}");
    }
    // A line too short to mask alone is left alone.
    assert!(err.contains("leak | short line: ab\n"), "{err}");
    assert_hidden("weir run's stderr", &run.0.stderr);
    assert_hidden("weir run's stdout", &run.0.stdout);

    let json = with_secrets(&repo, Some(TOKEN), &["run", "--json", "--no-cache", "leak"]);
    json.expect_code(0);
    assert_hidden("weir run --json", &json.0.stdout);
    assert_hidden("weir run --json's stderr", &json.0.stderr);

    let show = repo.weir(&["show", "--job", "leak"]);
    show.expect_code(0);
    assert!(show.stdout().contains("raw: ***"), "{}", show.stdout());
    assert_hidden("weir show", &show.0.stdout);

    // The cache entry's log is masked too.
    let entries = repo.git(&[
        "for-each-ref",
        "--format=%(refname)",
        "refs/weir/cache/leak/",
    ]);
    let entry = entries.lines().next().expect("leak was cached");
    let log = repo.git(&["show", &format!("{entry}:log")]);
    assert!(log.contains("raw: ***"), "{log}");
    assert_hidden("the cache entry's log", log.as_bytes());
    assert_git_clean(&repo);
}

#[test]
fn only_the_jobs_that_list_a_secret_receive_it() {
    let repo = secrets_repo();
    let run = with_secrets(&repo, Some(TOKEN), &["run", "-j", "1"]);
    run.expect_code(0);
    assert!(
        run.stderr().contains("other sees no token no key"),
        "{}",
        run.stderr()
    );
    let env = repo.read("other-env.txt");
    assert!(!env.contains("TOKEN=") && !env.contains("KEY="), "{env}");
    assert_hidden("the other job's environment", env.as_bytes());
}

#[test]
fn a_run_that_selects_no_job_with_a_secret_needs_no_value() {
    let repo = secrets_repo();
    std::fs::remove_file(repo.file(".secrets/key")).unwrap();
    with_secrets(&repo, None, &["run", "other"]).expect_code(0);
}

#[test]
fn a_missing_value_fails_the_job_naming_the_secret_and_its_source() {
    let repo = TestRepo::with_pipeline(
        r#"
[secrets]
TOKEN = { env = "MY_TOKEN" }
KEY = { file = ".secrets/key" }

[jobs.env]
secrets = ["TOKEN"]
run = "touch env-ran"

[jobs.file]
secrets = ["KEY"]
run = "touch file-ran"
"#,
    );
    let run = with_secrets(&repo, None, &["run", "--keep-going"]);
    run.expect_code(1);
    let err = run.stderr();
    assert!(
        err.contains("env: failed (secret `TOKEN`: environment variable `MY_TOKEN` is not set)"),
        "{err}"
    );
    assert!(
        err.contains("file: failed (secret `KEY`: file `.secrets/key` does not exist)"),
        "{err}"
    );
    assert!(!repo.file("env-ran").exists() && !repo.file("file-ran").exists());

    // Set but empty is missing too; so is an empty file.
    repo.write(".secrets/key", "\n");
    let run = with_secrets(&repo, Some(""), &["run", "--keep-going", "--json"]);
    run.expect_code(1);
    let out = run.stdout();
    assert!(
        out.contains("secret `TOKEN`: environment variable `MY_TOKEN` is empty"),
        "{out}"
    );
    assert!(
        out.contains("secret `KEY`: file `.secrets/key` is empty"),
        "{out}"
    );
}

#[test]
fn a_job_whose_outputs_hold_a_secret_is_not_cached() {
    let repo = TestRepo::with_pipeline(
        r#"
[secrets]
TOKEN = { env = "MY_TOKEN" }

[jobs.publish]
secrets = ["TOKEN"]
outputs = ["dist/**"]
run = 'mkdir -p dist && echo fine > dist/ok.txt && printf "user:%s" "$TOKEN" | base64 -w0 > dist/auth.b64 && echo built'
"#,
    );
    let run = with_secrets(&repo, Some(TOKEN), &["run"]);
    run.expect_code(0);
    let err = run.stderr();
    assert!(err.contains("publish: passed"), "{err}");
    assert!(
        err.contains(
            "warning: job `publish`: not cached: its output dist/auth.b64 contains a secret value"
        ),
        "{err}"
    );
    assert_eq!(
        repo.git(&["for-each-ref", "refs/weir/cache/"]),
        "",
        "nothing was stored"
    );
    // So the next run runs it again, and says so in its JSON events.
    let json = with_secrets(&repo, Some(TOKEN), &["run", "--json"]);
    json.expect_code(0);
    let out = json.stdout();
    assert!(
        out.contains(r#"{"event":"job_warning","job":"publish","message":"not cached: its output dist/auth.b64 contains a secret value"}"#),
        "{out}"
    );
    assert!(out.contains(r#""status":"passed""#), "{out}");
    assert_hidden("weir run --json", out.as_bytes());
}

#[test]
fn key_cmd_output_and_errors_are_masked() {
    let repo = TestRepo::with_pipeline(
        r#"
[secrets]
TOKEN = { file = ".secrets/token" }

[jobs.keyed]
secrets = ["TOKEN"]
key_cmd = "cat .secrets/token"
run = "echo ran"

[jobs.broken]
secrets = ["TOKEN"]
key_cmd = "cat .secrets/token >&2; exit 1"
run = "echo ran"
"#,
    );
    repo.write(".secrets/token", format!("{TOKEN}\n"));
    let run = repo.weir(&["run", "--keep-going"]);
    run.expect_code(1);
    let err = run.stderr();
    assert!(err.contains("keyed: passed"), "{err}");
    assert!(err.contains("broken: failed (`key_cmd` failed"), "{err}");
    assert!(err.contains("***"), "{err}");
    assert_hidden("weir run's stderr", &run.0.stderr);
    let explain = repo.weir(&["explain", "keyed"]);
    explain.expect_code(0);
    assert_hidden("weir explain", &explain.0.stdout);
    let objects = repo.git_with_input(&["cat-file", "--batch-all-objects", "--batch"], b"");
    assert!(objects.contains("key_cmd: ***"), "{objects}");
    assert_hidden("git objects", objects.as_bytes());
}

#[test]
fn the_key_holds_secret_names_not_values() {
    let repo = TestRepo::with_pipeline(
        r#"
[secrets]
TOKEN = { env = "MY_TOKEN" }

[jobs.build]
secrets = ["TOKEN"]
run = 'echo "built with $TOKEN"'
"#,
    );
    with_secrets(&repo, Some(TOKEN), &["run"]).expect_code(0);
    // Another value, same names: the stored result is still good, and a hit needs no value.
    let run = with_secrets(&repo, Some("another-value"), &["run"]);
    run.expect_code(0);
    assert!(run.stderr().contains("build: cached"), "{}", run.stderr());
    let run = with_secrets(&repo, None, &["run"]);
    run.expect_code(0);
    assert!(run.stderr().contains("build: cached"), "{}", run.stderr());
    let entry = repo.git(&[
        "for-each-ref",
        "--format=%(refname)",
        "refs/weir/cache/build/",
    ]);
    let manifest = repo.git(&["show", &format!("{}:manifest", entry.trim())]);
    assert!(manifest.contains("secret \"TOKEN\"\n"), "{manifest}");
    assert_hidden("the manifest", manifest.as_bytes());
}
