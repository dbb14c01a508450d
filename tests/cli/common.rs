//! A real git repository in a temp dir, and the real `weir` binary run inside it with a
//! hermetic environment.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use tempfile::TempDir;

pub struct TestRepo {
    dir: TempDir,
    home: TempDir,
}

impl TestRepo {
    /// An empty repository on branch `main`.
    pub fn new() -> TestRepo {
        let repo = TestRepo {
            dir: TempDir::new().expect("temp dir"),
            home: TempDir::new().expect("temp home"),
        };
        repo.git(&["init", "-q", "-b", "main"]);
        repo
    }

    /// A repository with this pipeline committed.
    pub fn with_pipeline(pipeline: &str) -> TestRepo {
        let repo = TestRepo::new();
        repo.write(".pipeline.toml", pipeline);
        repo
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn file(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    pub fn write(&self, rel: &str, content: impl AsRef<[u8]>) {
        let path = self.file(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).expect("create dirs");
        }
        std::fs::write(path, content).expect("write file");
    }

    pub fn read(&self, rel: &str) -> String {
        std::fs::read_to_string(self.file(rel)).unwrap_or_else(|e| panic!("read {rel}: {e}"))
    }

    /// The environment every process in a test gets: nothing from the developer's machine but
    /// PATH, and git configured to ignore global and system config.
    pub fn hermetic(&self, cmd: &mut Command) {
        #[expect(clippy::disallowed_methods, reason = "tests hand the real PATH on")]
        let path = std::env::var_os("PATH").unwrap_or_default();
        cmd.env_clear()
            .env("PATH", path)
            .env("HOME", self.home.path())
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_AUTHOR_NAME", "Test")
            .env("GIT_AUTHOR_EMAIL", "test@example.com")
            .env("GIT_COMMITTER_NAME", "Test")
            .env("GIT_COMMITTER_EMAIL", "test@example.com")
            .env("GIT_AUTHOR_DATE", "2026-01-01T00:00:00Z")
            .env("GIT_COMMITTER_DATE", "2026-01-01T00:00:00Z")
            .current_dir(self.path());
    }

    pub fn git(&self, args: &[&str]) -> String {
        let mut cmd = Command::new("git");
        self.hermetic(&mut cmd);
        let out = cmd.args(args).output().expect("run git");
        assert!(
            out.status.success(),
            "git {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Stages and commits everything.
    pub fn commit_all(&self, message: &str) {
        self.git(&["add", "-A"]);
        self.git(&["commit", "-q", "--no-verify", "-m", message]);
    }

    /// Runs git with `input` on stdin, returning stdout.
    pub fn git_with_input(&self, args: &[&str], input: &[u8]) -> String {
        use std::io::Write;
        let mut cmd = Command::new("git");
        self.hermetic(&mut cmd);
        let mut child = cmd
            .args(args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("run git");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(input)
            .expect("write stdin");
        let out = child.wait_with_output().expect("wait for git");
        assert!(out.status.success(), "git {args:?} failed");
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    /// A new bare repository (branch `main`) added as this repository's `origin`.
    pub fn bare_origin(&self) -> TempDir {
        let remote = TempDir::new().expect("temp dir");
        let path = remote.path().display().to_string();
        self.git(&["init", "-q", "--bare", "-b", "main", &path]);
        self.git(&["remote", "add", "origin", &path]);
        remote
    }

    /// A clone of `remote` in a new temp dir.
    pub fn clone_of(remote: &Path) -> TestRepo {
        let repo = TestRepo::new();
        std::fs::remove_dir_all(repo.file(".git")).expect("remove .git");
        repo.git(&["clone", "-q", &remote.display().to_string(), "."]);
        repo
    }

    /// `weir ARGS` in the repository root, not yet started.
    pub fn weir_cmd(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_weir"));
        self.hermetic(&mut cmd);
        cmd.args(args);
        cmd
    }

    /// Runs `weir ARGS` to completion.
    pub fn weir(&self, args: &[&str]) -> Run {
        Run(self.weir_cmd(args).output().expect("run weir"))
    }
}

impl Drop for TestRepo {
    fn drop(&mut self) {
        if std::thread::panicking() {
            return;
        }
        // Whatever a test did, weir must have left the object database and refs sound: once
        // the records a hook handed to a child are written, which every weir command waits for
        // too (holding this lock shared).
        if let Ok(lock) = std::fs::File::open(self.file(".git/weir/deferred.lock")) {
            // A child stuck with the lock fails the test rather than hanging the suite.
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
            while let Err(std::fs::TryLockError::WouldBlock) = lock.try_lock_shared() {
                assert!(
                    std::time::Instant::now() < deadline,
                    "the child writing a hook's records still holds its lock after 30 s"
                );
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
        }
        let mut cmd = Command::new("git");
        self.hermetic(&mut cmd);
        let out = cmd
            .args(["fsck", "--strict", "--no-progress"])
            .output()
            .expect("git fsck");
        let stderr = String::from_utf8_lossy(&out.stderr);
        // A repository without commits gets a notice about its unborn branch; nothing else is
        // acceptable.
        let problems = stderr.lines().any(|l| !l.starts_with("notice:"));
        assert!(
            out.status.success() && !problems,
            "git fsck --strict: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// A finished `weir` process.
pub struct Run(pub Output);

impl Run {
    pub fn code(&self) -> i32 {
        self.0.status.code().unwrap_or(-1)
    }

    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.0.stdout).into_owned()
    }

    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.0.stderr).into_owned()
    }

    /// Asserts the exit code, showing the output when it differs.
    #[track_caller]
    pub fn expect_code(&self, code: i32) -> &Run {
        assert_eq!(
            self.code(),
            code,
            "unexpected exit code\n--- stdout\n{}\n--- stderr\n{}",
            self.stdout(),
            self.stderr()
        );
        self
    }
}

/// Waits until `path` exists (a job signalling it got somewhere), failing after a long time.
#[track_caller]
pub fn wait_for_file(path: &Path) {
    let start = Instant::now();
    while !path.exists() {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "{} never appeared",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Whether a process with this pid still exists (and is not a zombie).
pub fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            // The state follows the parenthesised command name.
            let state = stat.rsplit(')').next().unwrap_or("").trim_start();
            !state.starts_with('Z')
        }
        Err(_) => false,
    }
}

/// Waits for a process to go away, returning false if it is still there after a while.
pub fn gone_within(pid: i32, limit: Duration) -> bool {
    let start = Instant::now();
    while alive(pid) {
        if start.elapsed() > limit {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    true
}
