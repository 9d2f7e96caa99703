//! A `kuku serve` child process for tests: its config written next to its data directory,
//! its stderr in a log file there, bounded waits for "serving" and for its exit.

use kuku_gateway::auth::encode_hex;
use kuku_server::config::NodeConfig;
use std::path::PathBuf;
use std::process::{Child, Command as Process, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use super::{ADMIN_TOKEN, SECRET};

pub const KUKU: &str = env!("CARGO_BIN_EXE_kuku");
/// A bound on every wait.
pub const WAIT: Duration = Duration::from_secs(30);

/// A `kuku serve` child with its stderr in a file next to the data directory.
pub struct Serve {
    pub child: Child,
    pub log: PathBuf,
}

impl Serve {
    /// Starts `kuku serve --config <config>` with `envs` set (failpoints, overrides).
    pub fn start(config: &NodeConfig, envs: &[(&str, &str)]) -> Serve {
        let stem: PathBuf = config.data_dir.with_extension("");
        let toml_path = stem.with_extension("toml");
        let log = stem.with_extension("log");
        std::fs::write(&toml_path, toml::to_string(config).expect("config to TOML")).unwrap();
        let mut command = Process::new(KUKU);
        command
            .args(["serve", "--config"])
            .arg(&toml_path)
            .env("KUKU_GATEWAY_SECRET", encode_hex(&SECRET))
            .env("KUKU_ADMIN_TOKEN", encode_hex(&ADMIN_TOKEN))
            .env("KUKU_LOG", "info")
            .env_remove(kuku_journal::failpoint::FAILPOINT_ENV)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap());
        for (key, value) in envs {
            command.env(key, value);
        }
        Serve {
            child: command.spawn().expect("kuku serve starts"),
            log,
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits for "Kuku is serving" (panics if the process exits first).
    pub fn wait_serving(&mut self) {
        let deadline = Instant::now() + WAIT;
        while !self.log().contains("Kuku is serving") {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "kuku serve exited ({status}) before serving:\n{}",
                    self.log()
                );
            }
            assert!(Instant::now() < deadline, "not serving:\n{}", self.log());
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits for the process to exit by itself.
    pub fn wait_exit(&mut self) -> ExitStatus {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status;
            }
            assert!(Instant::now() < deadline, "still running:\n{}", self.log());
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM and a clean exit.
    pub fn stop(&mut self) {
        // SAFETY: kill(2) on the pid of a child we own and have not reaped.
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGTERM);
        }
        let status = self.wait_exit();
        assert!(status.success(), "{status}:\n{}", self.log());
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        self.kill();
    }
}
